"""cfn-lint on infra/template.yaml, twice: as written, and with infra/openapi.yaml spliced in
where the template includes it (AWS::Include is resolved by CloudFormation at deploy time, so
cfn-lint alone never sees the API's routes, integrations and authorizer). Exit status: cfn-lint's.

    .venv/bin/python scripts/lint_template.py
"""

import json
import pathlib
import subprocess
import sys
import tempfile

import yaml
from cfnlint.decode import decode

root = pathlib.Path(__file__).resolve().parent.parent
template = root / "infra" / "template.yaml"
openapi = root / "infra" / "openapi.aws.yaml"


def splice(node):
    """Replaces every AWS::Include of ./openapi.aws.yaml with the document itself."""
    if isinstance(node, dict):
        transform = node.get("Fn::Transform")
        if isinstance(transform, dict) and transform.get("Name") == "AWS::Include":
            location = transform["Parameters"]["Location"]
            assert location in ("./openapi.aws.yaml", "openapi.aws.yaml"), location
            return yaml.safe_load(openapi.read_text())
        return {k: splice(v) for k, v in node.items()}
    if isinstance(node, list):
        return [splice(v) for v in node]
    return node


def lint(path):
    print(f"==> cfn-lint {path}", flush=True)
    return subprocess.run([str(pathlib.Path(sys.executable).parent / "cfn-lint"), str(path)]).returncode


def main():
    # The included document is generated from the API contract: it must be up to date.
    check = subprocess.run([sys.executable, str(root / "scripts" / "openapi_aws.py"), "--check"])
    if check.returncode != 0:
        return check.returncode
    status = lint(template)
    parsed, matches = decode(str(template))
    if matches:
        for m in matches:
            print(m)
        return 1
    expanded = splice(json.loads(json.dumps(parsed, default=str)))
    with tempfile.TemporaryDirectory() as d:
        out = pathlib.Path(d) / "template.expanded.json"
        out.write_text(json.dumps(expanded, indent=1))
        status |= lint(out)
    return status


if __name__ == "__main__":
    sys.exit(main())
