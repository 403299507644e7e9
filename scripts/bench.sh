#!/usr/bin/env bash
# Herald's benchmarks, side by side with the usual alternative (a Node.js Lambda on the `twilio`
# npm SDK and AWS SDK v3 clients), in the same run on the same machine: cold start and peak RSS
# under a Lambda Runtime API emulator, per-message CPU in process, signature validation (Herald,
# twilio on npm, twilio on PyPI), zip sizes, the AWS cost per million SMS from counted calls, and
# the sweeper under a backlog of 100,000 stuck messages.
#
#   scripts/bench.sh           # release builds, N = 20 starts, 1,000 invocations; writes BENCHMARKS.md
#   scripts/bench.sh --quick   # the same code paths with tiny N over the debug builds already in
#                              # target/debug; results in target/bench/quick/ (BENCHMARKS.md untouched)
#
# Benchmarks, not tests: a missed target is reported, never a failure. The script fails only when
# the harness breaks (a function does not start or answer, a request does not validate, no AWS
# call is counted, a recent message not final after one sweep, a stuck one never asked about within
# the bound), or, in full mode, when the Node.js baseline cannot be installed.
# Needs: .venv (moto, twilio; made as scripts/test.sh makes it), node and npm for the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

mode=full
case "${1:-}" in
  --quick) mode=quick ;;
  "") ;;
  -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
  *) echo "unknown argument: $1" >&2; exit 2 ;;
esac

started=$(date +%s)
target=${CARGO_TARGET_DIR:-$root/target}
results=$target/bench/$mode
logs=$results/logs
rm -rf "$results"
mkdir -p "$results" "$logs"
step() { printf '\n==> %s\n' "$*"; }
functions=(send-sms place-call webhook-receiver retry-processor credential-rotation)

if [ "$mode" = quick ]; then
  profile=debug starts=3 invocations=50 messages=200 call_messages=50
  sweep_stuck=500 sweep_limit="--limit 50"
  rounds_rust=20 rounds_node=20 rounds_python=3
else
  profile=release starts=20 invocations=1000 messages=2000 call_messages=200
  # The sweeper's backlog at retry-processor's own limit (no --limit: retry_processor::SWEEP_LIMIT).
  sweep_stuck=100000 sweep_limit=""
  rounds_rust=500 rounds_node=200 rounds_python=20
fi
bins=$target/$profile
bench=$bins/herald-bench

if [ "$mode" = full ]; then
  step "release build: herald-bench, then the five functions on their own"
  # Two builds: built together, cargo would unify features across them and the functions'
  # binaries would carry the bench's dependencies' features (not what is deployed).
  cargo build --release -p herald-bench
  args=()
  for f in "${functions[@]}"; do args+=(-p "$f"); done
  cargo build --release "${args[@]}"
else
  missing=()
  for b in herald-bench "${functions[@]}"; do [ -x "$bins/$b" ] || missing+=("$b"); done
  if [ ${#missing[@]} -gt 0 ]; then
    step "debug build of what is missing: ${missing[*]}"
    args=()
    for b in "${missing[@]}"; do args+=(-p "$b"); done
    cargo build "${args[@]}"
  fi
fi

step "Python tools (.venv: moto server, twilio SDK)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
fi
python_version=$(.venv/bin/python -c 'import sys; print(sys.version.split()[0])')

step "Node.js baseline: twilio and AWS SDK v3 clients from npm into $target/bench/node"
node_dir=$target/bench/node
node_bin=$(command -v node || true)
baseline_unavailable=""
if [ -z "$node_bin" ] || ! command -v npm >/dev/null; then
  baseline_unavailable="node or npm is not installed"
elif [ "$("$node_bin" -p 'process.versions.node.split(".")[0]')" -lt 18 ]; then
  baseline_unavailable="Node.js $("$node_bin" --version) is older than 18"
else
  mkdir -p "$node_dir"
  if ! cmp -s bench/node/package.json "$node_dir/package.json" || [ ! -d "$node_dir/node_modules/twilio" ]; then
    cp bench/node/package.json "$node_dir/package.json"
    if ! (cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error >"$logs/npm-install.log" 2>&1); then
      rm -f "$node_dir/package.json"
      baseline_unavailable="npm install failed (see $logs/npm-install.log)"
    fi
  fi
fi
if [ -n "$baseline_unavailable" ]; then
  if [ "$mode" = full ]; then
    echo "the Node.js baseline is required for the full benchmark: $baseline_unavailable" >&2
    exit 1
  fi
  echo "baseline unavailable: $baseline_unavailable (quick mode goes on without it)"
  node_args=(--baseline-unavailable "$baseline_unavailable")
  node_version=null
else
  node_args=(--node "$node_bin" --node-script "$root/bench/node/lambda.js" --node-modules "$node_dir/node_modules")
  node_version="\"$("$node_bin" --version | tr -d v)\""
fi

step "moto server on a loopback port (counts every AWS call)"
moto_out=$results/moto.out
source scripts/lib/moto.sh
start_moto "$moto_out" "$logs/moto.err"
trap 'kill $moto_pid 2>/dev/null || true' EXIT
aws=http://127.0.0.1:$moto_port

rel() { echo "${1#"$root"/}"; }
cmd_lambda="$(rel "$bench") lambda --aws-endpoint \$MOTO --bin-dir $(rel "$bins") --starts $starts --invocations $invocations --node \$(command -v node) --node-script bench/node/lambda.js --node-modules $(rel "$node_dir")/node_modules --out lambda.json"
cmd_inprocess="$(rel "$bench") inprocess --messages $messages --concurrency 16 --out inprocess.json"
cmd_signature="$(rel "$bench") signature-corpus --count 200 --out corpus.json && $(rel "$bench") signature --corpus corpus.json --rounds $rounds_rust --out s.json; NODE_PATH=$(rel "$node_dir")/node_modules node bench/node/signature.js corpus.json $rounds_node s.json; .venv/bin/python bench/python/signature.py corpus.json $rounds_python s.json"
cmd_sweep="$(rel "$bench") sweep --stuck $sweep_stuck --fresh 20 ${sweep_limit:+$sweep_limit }--out sweep.json"
cmd_calls="$(rel "$bench") aws-calls --aws-endpoint \$MOTO --messages $call_messages --out aws-calls.json"

step "1-2. cold start and peak RSS under the Runtime API emulator ($starts starts, $invocations invocations)"
"$bench" lambda --aws-endpoint "$aws" --bin-dir "$bins" --events-dir events --starts "$starts" \
  --invocations "$invocations" "${node_args[@]}" --log-dir "$logs" --out "$results/lambda.json"

step "3. send-sms and webhook-receiver in process ($messages messages)"
"$bench" inprocess --messages "$messages" --concurrency 16 --out "$results/inprocess.json"

step "4. signature validation: Herald, twilio (npm), twilio (PyPI) over one file of requests"
"$bench" signature-corpus --count 200 --out "$results/signature-requests.json"
"$bench" signature --corpus "$results/signature-requests.json" --rounds "$rounds_rust" --out "$results/signature-herald.json"
if [ -z "$baseline_unavailable" ]; then
  NODE_PATH="$node_dir/node_modules" "$node_bin" bench/node/signature.js \
    "$results/signature-requests.json" "$rounds_node" "$results/signature-node.json"
fi
.venv/bin/python bench/python/signature.py "$results/signature-requests.json" "$rounds_python" "$results/signature-python.json"

step "5. arm64 zips"
zip_dir=$root/target/lambda-arm64
missing_zip=0
for f in "${functions[@]}"; do [ -f "$zip_dir/$f/bootstrap.zip" ] || missing_zip=1; done
if [ $missing_zip -eq 1 ]; then
  if [ "$mode" = full ]; then
    scripts/package.sh
  else
    echo "not built (scripts/package.sh builds them); reported as such"
  fi
fi
for f in "${functions[@]}"; do
  if [ -f "$zip_dir/$f/bootstrap.zip" ]; then
    printf '  %-22s %10d bytes\n' "$f" "$(stat -c %s "$zip_dir/$f/bootstrap.zip")"
  else
    printf '  %-22s not built\n' "$f"
  fi
done

step "6. AWS calls per message, counted by moto ($call_messages messages)"
"$bench" aws-calls --aws-endpoint "$aws" --messages "$call_messages" --out "$results/aws-calls.json"

step "7. the sweeper under a backlog ($sweep_stuck stuck messages${sweep_limit:+, $sweep_limit})"
# shellcheck disable=SC2086 # $sweep_limit is empty or two words
"$bench" sweep --stuck "$sweep_stuck" --fresh 20 $sweep_limit --out "$results/sweep.json"

node_modules_size=null
[ -d "$node_dir/node_modules" ] && node_modules_size="\"$(du -sh "$node_dir/node_modules" | cut -f1)B on disk\""
json_str() { .venv/bin/python -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
cat >"$results/run.json" <<EOF
{
  "mode": "$mode",
  "date": "$(date -u +%Y-%m-%dT%H:%MZ)",
  "node_version": $node_version,
  "python_version": "$python_version",
  "rust_version": "$(rustc --version | cut -d' ' -f2)",
  "zip_dir": $(json_str "$zip_dir"),
  "node_modules_size": $node_modules_size,
  "commands": {
    "lambda": $(json_str "$cmd_lambda"),
    "inprocess": $(json_str "$cmd_inprocess"),
    "signature": $(json_str "$cmd_signature"),
    "aws_calls": $(json_str "$cmd_calls"),
    "sweep": $(json_str "$cmd_sweep")
  }
}
EOF

if [ "$mode" = full ]; then
  report=$root/BENCHMARKS.md
else
  report=$results/BENCHMARKS.md
fi
"$bench" report --results "$results" --out "$report"
echo
echo "results: $(rel "$results")/*.json; report: $(rel "$report") ($mode, $(( $(date +%s) - started )) s)"
