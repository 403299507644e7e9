"""cfn-lint on infra/template.yaml, after checking that HttpApi's DefinitionBody (written into the
template by scripts/openapi_aws.py) is up to date with infra/openapi.yaml. The document is inline,
so cfn-lint, `sam validate` and `sam validate --lint` (scripts/sam_validate.sh) all read the same
template with the real routes, integrations and authorizer. Exit status: non-zero on any failure.

    .venv/bin/python scripts/lint_template.py
"""

import pathlib
import subprocess
import sys

root = pathlib.Path(__file__).resolve().parent.parent
template = root / "infra" / "template.yaml"


def main():
    check = subprocess.run([sys.executable, str(root / "scripts" / "openapi_aws.py"), "--check"])
    if check.returncode != 0:
        return check.returncode
    print(f"==> cfn-lint {template.relative_to(root)}", flush=True)
    cfn_lint = pathlib.Path(sys.executable).parent / "cfn-lint"
    return subprocess.run([str(cfn_lint), str(template)]).returncode


if __name__ == "__main__":
    sys.exit(main())
