#!/usr/bin/env bash
# Builds one `bootstrap` zip per Lambda function with cargo-lambda (Zig as the cross linker),
# for arm64 (Graviton, as infra/template.yaml declares) unless told otherwise, and prints each
# zip's size. cargo-lambda and ziglang come from PyPI into .venv; the Rust std of the target
# is added with rustup when missing.
#
#   scripts/package.sh                 # arm64 zips in target/lambda-arm64/<function>/bootstrap.zip
#   scripts/package.sh --arch x86_64   # x86_64 zips (when the aarch64 std cannot be had)
#   scripts/package.sh --require-all   # fail unless all five functions are in the tree
#   scripts/package.sh --or-x86_64      # x86_64 zips, said loudly, if the aarch64 std cannot
#                                       # be had (a machine that cannot reach rustup's server)
set -euo pipefail
cd "$(dirname "$0")/.."

arch=arm64
require_all=0
or_x86_64=0
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --require-all) require_all=1; shift ;;
    --or-x86_64) or_x86_64=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
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

has_std() { [ -d "$(rustc --print sysroot)/lib/rustlib/$triple" ]; }
if ! has_std && command -v rustup >/dev/null; then
  echo "==> rustup target add $triple (the Rust standard library for the Lambda target)"
  rustup target add "$triple" || true
fi
if ! has_std && [ "$arch" = arm64 ] && [ $or_x86_64 -eq 1 ]; then
  echo "WARNING: no Rust standard library for $triple (rustup could not add it): building the" >&2
  echo "WARNING: x86_64 zips instead; deploy with Architectures [x86_64] or build on a machine" >&2
  echo "WARNING: that has the target (rustup target add $triple)." >&2
  arch=x86_64; flag=--x86-64; triple=x86_64-unknown-linux-gnu
fi
if ! has_std; then
  echo "the Rust standard library for $triple is not installed and rustup could not add it:" >&2
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
