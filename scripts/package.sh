#!/usr/bin/env bash
# Builds one `bootstrap` zip per Lambda function with cargo-lambda (Zig as the cross linker),
# for arm64 (Graviton, as infra/template.yaml declares) unless told otherwise, and prints each
# zip's size. cargo-lambda and ziglang come from PyPI into .venv; the Rust std of the target
# must be installed (`rustup target add aarch64-unknown-linux-gnu`).
#
#   scripts/package.sh                 # arm64 zips in target/lambda-arm64/<function>/bootstrap.zip
#   scripts/package.sh --arch x86_64   # x86_64 zips (when the aarch64 std cannot be had)
#   scripts/package.sh --require-all   # fail unless all five functions are in the tree
set -euo pipefail
cd "$(dirname "$0")/.."

arch=arm64
require_all=0
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --require-all) require_all=1; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
case "$arch" in
  arm64) flag=--arm64; triple=aarch64-unknown-linux-gnu ;;
  x86_64) flag=--x86-64; triple=x86_64-unknown-linux-gnu ;;
  *) echo "--arch must be arm64 or x86_64" >&2; exit 2 ;;
esac

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check 'cargo-lambda>=1.8,<2' 'ziglang>=0.13,<0.16'
export PATH="$(pwd)/.venv/bin:$PATH"

if ! rustc --print sysroot >/dev/null || [ ! -d "$(rustc --print sysroot)/lib/rustlib/$triple" ]; then
  echo "the Rust standard library for $triple is not installed:" >&2
  echo "  rustup target add $triple        (or: scripts/package.sh --arch x86_64)" >&2
  exit 1
fi

all=(send-sms place-call webhook-receiver retry-processor credential-rotation)
present=()
missing=()
for f in "${all[@]}"; do
  if [ -f "functions/$f/Cargo.toml" ]; then present+=("$f"); else missing+=("$f"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "not in this tree: ${missing[*]} (functions/<name>/Cargo.toml missing)" >&2
  [ $require_all -eq 1 ] && exit 1
fi

out="target/lambda-$arch"
bins=()
for f in "${present[@]}"; do bins+=(--bin "$f"); done
echo "==> cargo lambda build --release $flag (${present[*]})"
cargo lambda build --release "$flag" --output-format zip --lambda-dir "$out" "${bins[@]}"

echo
echo "architecture: $arch ($triple)"
printf '%-22s %12s  %s\n' function bytes zip
for f in "${present[@]}"; do
  zip="$out/$f/bootstrap.zip"
  [ -f "$zip" ] || { echo "missing $zip" >&2; exit 1; }
  printf '%-22s %12d  %s\n' "$f" "$(stat -c %s "$zip")" "$zip"
done
echo "built ${#present[@]} of ${#all[@]} functions for $arch"
