#!/usr/bin/env bash
# Property-based tests of Herald's HTTP API against infra/openapi.yaml: starts `herald up` on a
# free loopback port with a temporary data folder, runs schemathesis (PyPI, in .venv) with its
# checks against every operation, bounded in examples, and stops the server. Fails on any 5xx,
# response that does not match the document, or status code the document does not list.
# `positive_data_acceptance` is left out: a schema-valid `to` may still be no phone number, or
# one whose country is not allowed, and those are refused with 422 on purpose.
#
#   scripts/schemathesis.sh [--max-examples N]      (HERALD_BIN: a built `herald` binary)
set -euo pipefail
cd "$(dirname "$0")/.."

max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-20}
if [ "${1:-}" = "--max-examples" ]; then max_examples=$2; fi

herald=${HERALD_BIN:-}
if [ -z "$herald" ]; then
  cargo build --quiet --bin herald
  herald="${CARGO_TARGET_DIR:-target}/debug/herald"
fi

data=$(mktemp -d)
out="$data/up.log"
# Generous limits: schemathesis sends hundreds of requests from one caller to a few numbers.
CALLER_RATE_LIMIT_PER_MINUTE=1000000 RECIPIENT_LIMIT_PER_HOUR=1000000 \
RECIPIENT_LIMIT_PER_DAY=1000000 COUNTRY_LIMIT_PER_HOUR=1000000 OTP_MAX_SENDS=1000 \
HERALD_LOG=warn "$herald" up --port 0 --data-dir "$data" >"$out" 2>"$data/up.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$data"' EXIT

url=""; key=""
for _ in $(seq 1 300); do
  url=$(sed -n 's/^ *API (local API Gateway): *//p' "$out" | head -n1)
  key=$(sed -n 's/^ *API key (bearer): *//p' "$out" | head -n1)
  [ -n "$url" ] && [ -n "$key" ] && break
  kill -0 $pid 2>/dev/null || { cat "$data/up.err"; echo "herald up did not start"; exit 1; }
  sleep 0.1  # waiting for an external process to start, not synchronising tests
done
[ -n "$url" ] && [ -n "$key" ] || { echo "herald up did not print its URL and key"; exit 1; }
echo "herald up at $url"

.venv/bin/schemathesis run infra/openapi.yaml \
  --url "$url" \
  --header "Authorization: Bearer $key" \
  --checks all \
  --exclude-checks positive_data_acceptance \
  --max-examples "$max_examples" \
  --seed 1 \
  --workers 1 \
  --request-timeout 10 \
  --suppress-health-check all
