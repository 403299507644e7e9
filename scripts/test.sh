#!/usr/bin/env bash
# Every test of Herald: format, lints, unit and conformance tests (SQLite, and DynamoDB/KMS/
# Secrets Manager/SQS through a moto server on a loopback port), the simulator against Twilio's
# official Python SDK, and the end-to-end demo. Installs what it needs into .venv (PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

step "Python tools (.venv: moto server, twilio SDK, pytest)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "build"
cargo build --workspace --all-targets --all-features

step "moto server on a loopback port"
moto_log=$(mktemp)
.venv/bin/python scripts/free_port.py > "$moto_log.port"
moto_port=$(cat "$moto_log.port")
.venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >"$moto_log" 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  if .venv/bin/python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$moto_port/moto-api/', timeout=1)" 2>/dev/null; then break; fi
  kill -0 $moto_pid 2>/dev/null || { cat "$moto_log"; echo "moto server died"; exit 1; }
  sleep 0.1  # waiting for an external process to listen, not synchronising tests
done
export HERALD_TEST_AWS_ENDPOINT="http://127.0.0.1:$moto_port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true

step "cargo test (every crate, every test)"
cargo test --workspace --all-features -- --include-ignored

step "simulator against Twilio's official Python SDK"
export TWILIO_SIM_BIN="$root/target/debug/twilio-sim"
.venv/bin/python -m pytest -q local/twilio-sim/tests/python

step "herald demo (release build, as in the README)"
cargo run --release --bin herald -- demo

echo
echo "all tests passed"
