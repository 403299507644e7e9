#!/usr/bin/env bash
# `sam validate` (the SAM translator) and `sam validate --lint` (cfn-lint) on the template
# samconfig.toml names, as a user runs them, with two SAM CLI releases: the one
# scripts/requirements-sam.txt pins (.venv-sam-pinned) and the newest on PyPI (.venv-sam-latest).
# Fake credentials, no AWS call. Exit status non-zero if any of the four fails.
#
#   scripts/sam_validate.sh            # reuses the venvs when present (pinned: as pinned;
#                                      # latest: upgraded once a day at most)
#   SAM_VALIDATE_OFFLINE=1 scripts/sam_validate.sh   # never ask PyPI (venvs must exist)
set -euo pipefail
cd "$(dirname "$0")/.."

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export SAM_CLI_TELEMETRY=0
unset AWS_PROFILE AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE || true
pip_quiet=(--quiet --disable-pip-version-check)

venv() { # <dir> <pip args…>: creates or refreshes a venv with the SAM CLI
  local dir=$1; shift
  if [ ! -x "$dir/bin/sam" ]; then
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install "${pip_quiet[@]}" "$@"
  elif [ -z "${SAM_VALIDATE_OFFLINE:-}" ] && [ "$*" != "$(cat "$dir/.herald-spec" 2>/dev/null)" ]; then
    "$dir/bin/python" -m pip install "${pip_quiet[@]}" "$@"
  fi
  printf '%s' "$*" >"$dir/.herald-spec"
}

venv .venv-sam-pinned -r scripts/requirements-sam.txt
# The newest release: asked of PyPI at most once a day.
stamp=.venv-sam-latest/.herald-checked
if [ ! -x .venv-sam-latest/bin/sam ] || { [ -z "${SAM_VALIDATE_OFFLINE:-}" ] && [ -z "$(find "$stamp" -mmin -1440 2>/dev/null)" ]; }; then
  [ -x .venv-sam-latest/bin/sam ] || python3 -m venv .venv-sam-latest
  .venv-sam-latest/bin/python -m pip install "${pip_quiet[@]}" --upgrade aws-sam-cli
  touch "$stamp"
fi

status=0
for v in pinned latest; do
  sam=".venv-sam-$v/bin/sam"
  version=$("$sam" --version)
  for args in "" "--lint"; do
    printf '\n==> %s: sam validate %s\n' "$version" "$args"
    # shellcheck disable=SC2086 # $args is empty or one flag
    if ! "$sam" validate $args; then
      echo "FAILED: $version: sam validate $args" >&2
      status=1
    fi
  done
done
exit $status
