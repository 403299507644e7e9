"""Secrets Manager's rotation driver, played against the AWS emulator: what RotateSecret does.

Secrets Manager, on RotateSecret: turns rotation on with the rotation function and rules,
creates the new version under a fresh ClientRequestToken staged AWSPENDING *without a value*
(the placeholder the rotation function's steps check for: the token must be in
VersionIdsToStages with AWSPENDING, and GetSecretValue of it has no value until createSecret
stores one), then invokes the rotation function with
`{"Step", "SecretId", "ClientRequestToken", "RotationToken"}` for createSecret, setSecret,
testSecret and finishSecret in order, stopping at the first failure.

moto's RotateSecret creates exactly that placeholder, and then tries to run the rotation
function itself (in Docker). So the driver switches moto's Lambda to its Docker-less backend
for the one RotateSecret call (`POST /moto-api/config`), where the function is unknown and moto
answers ResourceNotFoundException *after* the placeholder and the rotation settings are stored;
the driver then checks DescribeSecret shows the placeholder, restores moto's config, and
invokes the real credential-rotation binary (through the Lambda emulator) for the four steps.
"""

import json
import urllib.request
import uuid

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


def _moto_config(endpoint, doc=None):
    url = endpoint.rstrip("/") + "/moto-api/config"
    if doc is None:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read() or b"{}")
    req = urllib.request.Request(url, data=json.dumps(doc).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def start_rotation(sm, endpoint, secret_arn, function_arn, rotation_days, token):
    """RotateSecret's bookkeeping: rotation on, the AWSPENDING placeholder for `token`."""
    before = _moto_config(endpoint)
    use_docker = (before.get("lambda") or {}).get("use_docker", True)
    _moto_config(endpoint, {"lambda": {"use_docker": False}})
    try:
        try:
            sm.rotate_secret(SecretId=secret_arn, ClientRequestToken=token,
                             RotationLambdaARN=function_arn,
                             RotationRules={"AutomaticallyAfterDays": int(rotation_days)})
        except sm.exceptions.ResourceNotFoundException:
            pass  # moto could not run the function itself: the driver does
    finally:
        _moto_config(endpoint, {"lambda": {"use_docker": use_docker}})
    meta = sm.describe_secret(SecretId=secret_arn)
    stages = (meta.get("VersionIdsToStages") or {}).get(token) or []
    if "AWSPENDING" not in stages:
        raise RuntimeError(f"RotateSecret left no AWSPENDING placeholder for the token "
                           f"(stages: {stages})")
    if not meta.get("RotationEnabled"):
        raise RuntimeError("RotateSecret did not turn rotation on")
    return meta


def rotate(sm, endpoint, secret_arn, function_arn, rotation_days, invoke, token=None):
    """Drives one rotation; returns {"token", "steps": [(step, kind, body)], "ok"}."""
    token = token or str(uuid.uuid4())
    start_rotation(sm, endpoint, secret_arn, function_arn, rotation_days, token)
    steps = []
    for step in STEPS:
        kind, body = invoke({"Step": step, "SecretId": secret_arn,
                             "ClientRequestToken": token,
                             "RotationToken": str(uuid.uuid4())})
        steps.append((step, kind, body))
        if kind != "response":
            return {"token": token, "steps": steps, "ok": False}
    return {"token": token, "steps": steps, "ok": True}
