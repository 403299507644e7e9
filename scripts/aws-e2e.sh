#!/usr/bin/env bash
# Herald as AWS runs it: infra/template.yaml translated by the SAM translator and created in a
# moto server with IAM enforced; the five binaries under a Lambda Runtime API emulator with the
# environment and role credentials the stack gives them; the HTTP API, the schedule and the
# secret's rotation played from the translated template; every flow asserted, a negative
# control, and every AWS call checked against its role with an IAM evaluator that is not ours
# (@cloud-copilot/iam-simulate). See scripts/aws_e2e/run.py.
#
#   scripts/aws-e2e.sh           run it (scripts/test.sh does)
#   scripts/aws-e2e.sh --keep    leave the stack running, with an env file for
#                                `cargo lambda watch --env-file` (printed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
if [ ! -d scripts/aws_e2e/node_modules ]; then
  npm ci --prefix scripts/aws_e2e --no-audit --no-fund --loglevel=error
fi
cargo build --quiet --bin send-sms --bin place-call --bin webhook-receiver \
  --bin retry-processor --bin credential-rotation --bin twilio-sim

# The binaries get only what their stack gives them (plus the two endpoints); nothing of this
# shell's AWS settings may leak into them or into the harness's own view.
unset AWS_PROFILE AWS_ENDPOINT_URL HERALD_TEST_AWS_ENDPOINT
export AWS_EC2_METADATA_DISABLED=true
exec .venv/bin/python scripts/aws_e2e/run.py "$@"
