#!/usr/bin/env bash
# Every test of Herald: format, lints, unit and conformance tests (SQLite, and DynamoDB/KMS/
# Secrets Manager/SQS through a moto server on a loopback port), the simulator against Twilio's
# official Python SDK, the end-to-end demo, soak and rotation drill, the five Lambda zips, and
# the benchmark harness in its quick mode (BENCHMARKS.md comes from `scripts/bench.sh`).
# Installs what it needs into .venv (PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

step "Python tools (.venv: moto server, twilio SDK, pytest)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt

step "cfn-lint: infra/template.yaml (its OpenAPI document inline, generated from infra/openapi.yaml)"
.venv/bin/python scripts/lint_template.py

step "SAM CLI: sam validate and sam validate --lint, pinned (scripts/requirements-sam.txt) and newest"
scripts/sam_validate.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "build"
cargo build --workspace --all-targets --all-features

step "moto server on a loopback port (one request at a time: see scripts/moto_server.py)"
moto_out=$(mktemp)
source scripts/lib/moto.sh
start_moto "$moto_out" "$moto_out.err"
trap 'kill $moto_pid 2>/dev/null || true; rm -f "$moto_out" "$moto_out.err"' EXIT
export HERALD_TEST_AWS_ENDPOINT="http://127.0.0.1:$moto_port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true

step "cargo test (every crate, every test)"
cargo test --workspace --all-features -- --include-ignored

step "schemathesis: herald up against infra/openapi.yaml (no 5xx, no schema violation, no undocumented status)"
HERALD_BIN="$root/target/debug/herald" scripts/schemathesis.sh

step "simulator and signature oracle against Twilio's official Python SDK"
export TWILIO_SIM_BIN="$root/target/debug/twilio-sim"
.venv/bin/python -m pytest -q local/twilio-sim/tests/python shared/tests/python

step "the AWS emulation's own tests: stack translation and deploy into moto, the Lambda runtime, gateway and event sources, call recording and the IAM evaluator"
if [ ! -d scripts/aws_e2e/node_modules ]; then
  npm ci --prefix scripts/aws_e2e --no-audit --no-fund --loglevel=error
fi
(unset HERALD_TEST_AWS_ENDPOINT AWS_ENDPOINT_URL; .venv/bin/python -m pytest -q scripts/aws_e2e/tests)

step "Herald as AWS runs it (scripts/aws-e2e.sh): the template created in moto with IAM enforced, the five binaries under their roles, every flow, the negative control, resource-level IAM"
scripts/aws-e2e.sh

step "herald demo (release build, as in the README)"
cargo run --release --bin herald -- demo

step "herald rotation-drill: rotate the API key and the auth token under a stream of sends and callbacks"
cargo run --release --bin herald -- rotation-drill --json

step "herald soak: 2,000 alerting-shaped messages and 200 voice alerts under faults and 5 process kills (exit 1 unless nothing is lost, doubled, adopted or wrong)"
cargo run --release --bin herald -- soak --messages 2000 --calls 200 --kills 5 --fault-rate 0.2 --deadline-secs 300 --json

step "herald soak, control: with the old matching rule (To and text only) the soak must fail"
if cargo run --release --bin herald -- soak --messages 2000 --calls 200 --kills 5 --fault-rate 0.2 --deadline-secs 300 --json --control-legacy-match; then
  echo "the soak passed with the old matching rule: it no longer sees adoption" >&2
  exit 1
fi

step "package: the five bootstrap zips for arm64 (cargo-lambda and Zig from PyPI), with their sizes"
scripts/package.sh --require-all --or-x86_64

step "benchmarks, quick: the harness must not rot (targets are reported, never enforced)"
scripts/bench.sh --quick

echo
echo "all tests passed"
