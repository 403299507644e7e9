"""The runtime half of scripts/aws-e2e.sh without a deployed stack: the Lambda Runtime API
emulator (with a Python stand-in function and a real binary), the gateway (routing, JWT, 401,
throttles, timeouts, the event's shape) and the SQS poller against a plain moto server.

    .venv/bin/python -m pytest scripts/aws_e2e/tests/test_runtime.py
"""

import base64
import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
ROOT = HERE.parent.parent.parent

import event_sources  # noqa: E402
import harness as harness_mod  # noqa: E402
from gateway import Gateway  # noqa: E402
from lambda_emulator import FunctionEmulator  # noqa: E402

STUB = r'''
import json, os, sys, time, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
def post(path, doc):
    req = urllib.request.Request(api + path, data=json.dumps(doc).encode(), method="POST")
    urllib.request.urlopen(req).read()
if os.environ.get("STUB_INIT_FAIL"):
    post("/init/error", {"errorType": "Stub.InitFailed", "errorMessage": "no config"})
    sys.exit(1)
while True:
    with urllib.request.urlopen(api + "/invocation/next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        headers = {k: r.headers[k] for k in ("Lambda-Runtime-Deadline-Ms",
                   "Lambda-Runtime-Invoked-Function-Arn", "Lambda-Runtime-Trace-Id")}
        event = json.loads(r.read())
    print("handling", rid, flush=True)
    if "sleep" in event:
        time.sleep(event["sleep"])
    if event.get("exit"):
        os._exit(3)
    if event.get("fail"):
        post(f"/invocation/{rid}/error", {"errorType": "Stub.Failed", "errorMessage": "asked"})
        continue
    if "Records" in event:
        bad = [{"itemIdentifier": rec["messageId"]} for rec in event["Records"]
               if rec["body"] == "bad"]
        print("batch", len(event["Records"]), flush=True)
        post(f"/invocation/{rid}/response", {"batchItemFailures": bad})
        continue
    if event.get("version") == "2.0":
        post(f"/invocation/{rid}/response", {
            "statusCode": 201, "headers": {"content-type": "application/json"},
            "cookies": ["a=1"], "body": json.dumps(event)})
        continue
    post(f"/invocation/{rid}/response", {"event": event, "env": dict(os.environ),
                                         "headers": headers})
'''


@pytest.fixture
def stub(tmp_path):
    path = tmp_path / "stub.py"
    path.write_text(STUB)
    return [sys.executable, str(path)]


def emulator(stub, tmp_path, timeout=2, env=None, pool=1, name="stub"):
    cfg = {"function_name": f"herald-test-{name}", "timeout": timeout, "memory_size": 256,
           "log_format": "JSON", "log_group": f"/aws/lambda/herald-test-{name}",
           "environment": env or {"HERALD_X": "1"},
           "credentials": {"access_key_id": "ASIAX", "secret_access_key": "s",
                           "session_token": "t"}}
    return FunctionEmulator(name, stub, cfg, "us-east-1",
                            {"AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                             "TWILIO_API_BASE_URL": "http://127.0.0.1:8"},
                            log_dir=tmp_path / "logs", pool_size=pool, cwd=str(tmp_path))


def test_environment_is_exactly_lambdas(stub, tmp_path, monkeypatch):
    monkeypatch.setenv("HERALD_SHOULD_NOT_LEAK", "1")
    fn = emulator(stub, tmp_path).start()
    try:
        kind, body = fn.invoke({"hello": 1})
        assert kind == "response", body
        env = body["env"]
        assert "HERALD_SHOULD_NOT_LEAK" not in env
        expected = {
            "PATH", "LANG", "HERALD_X", "AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_FUNCTION_NAME",
            "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
            "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_REGION", "AWS_DEFAULT_REGION",
            "AWS_EXECUTION_ENV", "_HANDLER", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "TZ",
            "AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL", "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
            "TWILIO_API_BASE_URL"}
        # Python itself may add LC_CTYPE; nothing else.
        assert set(env) - {"LC_CTYPE"} == expected
        assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
        assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
        assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_provided.al2023"
        assert env["TZ"] == ":UTC"
        assert body["headers"]["Lambda-Runtime-Invoked-Function-Arn"].endswith(
            ":function:herald-test-stub")
        deadline = int(body["headers"]["Lambda-Runtime-Deadline-Ms"])
        assert 0 < deadline - time.time() * 1000 <= 2000
        assert any(line.startswith("handling") for line in fn.lines_since(0))
        assert "handling" in (tmp_path / "logs" / "stub.log").read_text()
    finally:
        fn.stop()


def test_errors_timeouts_and_crashes(stub, tmp_path):
    fn = emulator(stub, tmp_path, timeout=1).start()
    try:
        assert fn.invoke({"fail": 1}) == ("error", {"errorType": "Stub.Failed",
                                                    "errorMessage": "asked"})
        kind, body = fn.invoke({"sleep": 5})
        assert kind == "error" and body["errorType"] == "Sandbox.Timedout", body
        assert "Task timed out after 1.00 seconds" in body["errorMessage"]
        assert fn.invoke({"again": 1})[0] == "response"  # a fresh environment
        kind, body = fn.invoke({"exit": 1})
        assert kind == "error" and body["errorType"] == "Runtime.ExitError", body
        assert "exit status 3" in body["errorMessage"]
        assert fn.invoke({"again": 2})[0] == "response"
    finally:
        fn.stop()


def test_init_error_answers_the_next_invocation(stub, tmp_path):
    fn = emulator(stub, tmp_path, env={"STUB_INIT_FAIL": "1"})
    fn.start()
    try:
        assert fn.invoke({"x": 1}) == ("error", {"errorType": "Stub.InitFailed",
                                                 "errorMessage": "no config"})
    finally:
        fn.stop()


def test_one_invocation_per_environment(stub, tmp_path):
    import concurrent.futures
    fn = emulator(stub, tmp_path, timeout=5, pool=2).start()
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            results = list(ex.map(lambda i: fn.invoke({"sleep": 0.3, "i": i}), range(4)))
        assert all(k == "response" for k, _ in results)
        streams = {b["env"]["AWS_LAMBDA_RUNTIME_API"] for _, b in results}
        assert len(streams) == 2
    finally:
        fn.stop()


@pytest.mark.skipif(not (ROOT / "target/debug/credential-rotation").exists(),
                    reason="cargo build first")
def test_a_real_binary_answers_under_the_emulator(tmp_path):
    """credential-rotation with no AWS to reach: lambda_runtime starts (the variables it needs
    are there) and the step answers an error document, logged as JSON."""
    fn = FunctionEmulator(
        "credential-rotation", [str(ROOT / "target/debug/credential-rotation")],
        {"function_name": "herald-test-rotation", "timeout": 10, "log_format": "JSON",
         "environment": {"ROTATION_MODE": "api-key"}},
        "us-east-1", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                      "TWILIO_API_BASE_URL": "http://127.0.0.1:8"},
        log_dir=tmp_path / "logs")
    assert fn.start(wait_secs=30).wait_started(1), fn.lines_since(0)
    try:
        kind, body = fn.invoke({"Step": "createSecret", "SecretId": "arn:x",
                                "ClientRequestToken": "t", "RotationToken": "r"})
        assert kind == "error" and "errorMessage" in body, body
        lines = fn.lines_since(0)
        json_lines = [json.loads(ln) for ln in lines if ln.startswith("{")]
        assert any(d.get("message") == "rotation step failed" for d in json_lines), lines
    finally:
        fn.stop()


# -- gateway -----------------------------------------------------------------------------------

API = {
    "api_id": "abc123", "base_url": "https://abc123.execute-api.us-east-1.amazonaws.com",
    "routes": [
        {"method": "POST", "path": "/v1/messages", "function": "stub", "authorizer": "jwt",
         "timeout_ms": 29000, "throttle": {"burst": 2, "rate": 1}},
        {"method": "GET", "path": "/v1/messages/{id}", "function": "stub",
         "authorizer": "jwt", "timeout_ms": 29000},
        {"method": "GET", "path": "/v1/messages/report", "function": "stub",
         "authorizer": "jwt", "timeout_ms": 29000},
        {"method": "POST", "path": "/webhooks/twilio/{proxy+}", "function": "stub",
         "authorizer": None, "timeout_ms": 29000},
        {"method": "GET", "path": "/slow", "function": "stub", "authorizer": None,
         "timeout_ms": 300},
    ],
    "jwt": {"issuer": "https://issuer.test/", "audience": ["herald-api"],
            "identity_source": "$request.header.Authorization"},
    "default_throttle": {"burst": 100, "rate": 50},
}


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def call(url, method="GET", body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def gw(stub, tmp_path):
    fn = emulator(stub, tmp_path, timeout=5).start()
    stack = {"http_api": API, "region": "us-east-1", "account": "123456789012",
             "functions": {}, "endpoint": "http://127.0.0.1:9"}
    h = harness_mod.Harness(stack, tmp_path)
    clock = FakeClock()
    g = Gateway(API, lambda f, e, t: fn.invoke(e), "123456789012", "us-east-1",
                jwt_public_key=h.jwt_public_pem, clock=clock).start()
    yield g, h, clock
    g.stop()
    fn.stop()


def test_gateway_routes_and_event(gw):
    g, h, _ = gw
    auth = {"Authorization": "Bearer " + h.token("caller-1", aud="herald-api",
                                                 iss="https://issuer.test/", scope="a b")}
    s, hd, body = call(g.url + "/v1/messages?x=1&x=2&y=", "POST", b'{"to":"t"}',
                       {**auth, "Content-Type": "application/json", "Cookie": "c=1; d=2"})
    assert s == 201, body
    assert "a=1" in hd.get("Set-Cookie", "")
    ev = json.loads(body)
    assert ev["routeKey"] == "POST /v1/messages"
    assert ev["rawPath"] == "/v1/messages" and ev["rawQueryString"] == "x=1&x=2&y="
    assert ev["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert ev["cookies"] == ["c=1", "d=2"] and "cookie" not in ev["headers"]
    assert ev["headers"]["host"] == "abc123.execute-api.us-east-1.amazonaws.com"
    assert ev["headers"]["x-forwarded-proto"] == "https"
    assert ev["headers"]["x-forwarded-port"] == "443"
    assert ev["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert ev["body"] == '{"to":"t"}' and ev["isBase64Encoded"] is False
    ctx = ev["requestContext"]
    assert ctx["domainName"] == "abc123.execute-api.us-east-1.amazonaws.com"
    assert ctx["domainPrefix"] == "abc123" and ctx["stage"] == "$default"
    assert ctx["http"]["method"] == "POST" and ctx["routeKey"] == "POST /v1/messages"
    claims = ctx["authorizer"]["jwt"]["claims"]
    assert claims["sub"] == "caller-1" and isinstance(claims["exp"], str)
    assert ctx["authorizer"]["jwt"]["scopes"] == ["a", "b"]
    # Literal segments win over variables; greedy paths; form bodies are base64.
    tok = {"Authorization": "Bearer " + h.token("c", aud="herald-api",
                                                iss="https://issuer.test/")}
    ev = json.loads(call(g.url + "/v1/messages/report", headers=tok)[2])
    assert ev["routeKey"] == "GET /v1/messages/report" and "pathParameters" not in ev
    ev = json.loads(call(g.url + "/v1/messages/msg_1", headers=tok)[2])
    assert ev["pathParameters"] == {"id": "msg_1"}
    s, _, body = call(g.url + "/webhooks/twilio/status/x?mid=1", "POST", b"A=1&B=2",
                      {"Content-Type": "application/x-www-form-urlencoded"})
    ev = json.loads(body)
    assert ev["pathParameters"] == {"proxy": "status/x"}
    assert ev["isBase64Encoded"] is True and base64.b64decode(ev["body"]) == b"A=1&B=2"
    s, _, body = call(g.url + "/nowhere")
    assert (s, json.loads(body)) == (404, {"message": "Not Found"})


def test_gateway_jwt_refusals_never_invoke(gw, tmp_path):
    g, h, clock = gw
    good = dict(aud="herald-api", iss="https://issuer.test/")
    other_key = harness_mod.Harness({"http_api": API}, tmp_path / "other-issuer")
    cases = {
        "none": {},
        "issuer": {"Authorization": "Bearer " + h.token("x", aud="herald-api",
                                                        iss="https://evil.test/")},
        "audience": {"Authorization": "Bearer " + h.token("x", aud="other",
                                                          iss="https://issuer.test/")},
        "expired": {"Authorization": "Bearer " + h.token("x", exp=int(time.time()) - 60,
                                                         **good)},
        "key": {"Authorization": "Bearer " + other_key.token("x", **good)},
        "garbage": {"Authorization": "Bearer not-a-jwt"},
    }
    before = len(g.requests)
    for label, headers in cases.items():
        clock.t += 10  # the route's bucket is full again
        s, hd, body = call(g.url + "/v1/messages", "POST", b"{}", headers)
        assert (s, json.loads(body)) == (401, {"message": "Unauthorized"}), label
        assert "www-authenticate" in {k.lower() for k in hd}, label
    assert [st for _, st in g.requests[before:]] == [401] * len(cases)


def test_gateway_throttle_and_timeout(gw):
    g, h, clock = gw
    tok = {"Authorization": "Bearer " + h.token("x", aud="herald-api",
                                                iss="https://issuer.test/")}
    got = [call(g.url + "/v1/messages", "POST", b"{}", tok)[0] for _ in range(3)]
    assert got == [201, 201, 429]
    clock.t += 1.0  # one token back at 1 per second
    assert call(g.url + "/v1/messages", "POST", b"{}", tok)[0] == 201
    assert call(g.url + "/v1/messages", "POST", b"{}", tok)[0] == 429
    assert call(g.url + "/slow")[0] == 201  # answered within the route's 300 ms
    g.invoke = lambda f, e, t: (time.sleep(1), ("response", {}))[1]
    s, _, body = call(g.url + "/slow")
    assert (s, json.loads(body)) == (503, {"message": "Service Unavailable"})


def test_gateway_response_mapping():
    r = Gateway.response
    assert r("error", {"errorType": "x"})[0] == 500
    assert r("response", {"statusCode": "nope"})[0] == 500
    assert r("response", {"a": 1}) == (200, {"Content-Type": "application/json"}, b'{"a": 1}')
    s, h, d = r("response", {"statusCode": 204, "headers": {"x": "1"},
                             "multiValueHeaders": {"y": ["1", "2"]},
                             "body": base64.b64encode(b"\x00\x01").decode(),
                             "isBase64Encoded": True})
    assert (s, h["x"], h["y"], d) == (204, "1", "1,2", b"\x00\x01")


# -- SQS poller ---------------------------------------------------------------------------------

@pytest.fixture
def moto():
    env = {k: v for k, v in os.environ.items() if k != "INITIAL_NO_AUTH_ACTION_COUNT"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts/moto_server.py"),
                             "--until-stdin-closes"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    port = proc.stdout.readline().strip()
    assert port.isdigit(), port
    yield f"http://127.0.0.1:{port}"
    proc.stdin.close()
    proc.wait(timeout=10)


def test_sqs_poller_partial_failures_and_redrive(stub, tmp_path, moto):
    import boto3
    sqs = boto3.client("sqs", endpoint_url=moto, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    dlq = sqs.create_queue(QueueName="t-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    q = sqs.create_queue(QueueName="t-q", Attributes={
        "VisibilityTimeout": "30",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})})["QueueUrl"]
    q_arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    for body in ["good-1", "good-2", "bad", "good-3"]:
        sqs.send_message(QueueUrl=q, MessageBody=body, MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "job"}})
    fn = emulator(stub, tmp_path, timeout=5, pool=2).start()
    esm = {"function": "stub", "queue_arn": q_arn, "queue_url": q, "batch_size": 10,
           "function_response_types": ["ReportBatchItemFailures"], "maximum_concurrency": 2}
    seen = []

    def invoke(event):
        seen.append(event)
        return fn.invoke(event)
    p = event_sources.SqsPoller(esm, sqs, invoke, "us-east-1").start()
    try:
        deadline = time.monotonic() + 30
        while p.stats["deleted"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the poller's state
        assert p.stats["deleted"] == 3, p.stats
        rec = seen[0]["Records"][0]
        assert rec["eventSource"] == "aws:sqs" and rec["eventSourceARN"] == q_arn
        assert rec["awsRegion"] == "us-east-1" and rec["md5OfBody"]
        assert {"ApproximateReceiveCount", "SentTimestamp", "SenderId",
                "ApproximateFirstReceiveTimestamp"} <= set(rec["attributes"])
        assert rec["messageAttributes"]["kind"]["stringValue"] == "job"
        assert p.max_in_flight <= 2
        # The bad message comes back after its visibility timeout (moto's clock moved) and,
        # after maxReceiveCount receives, moto's redrive moves it to the DLQ.
        in_dlq = []
        deadline = time.monotonic() + 30
        while not in_dlq and time.monotonic() < deadline:
            req = urllib.request.Request(moto + "/_herald/clock", method="POST",
                                         data=json.dumps({"advance_secs": 31}).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(req, timeout=5).read()
            except urllib.error.HTTPError:
                pytest.skip("this moto server has no clock (scripts/moto_clock.py)")
            time.sleep(0.3)  # polling the emulator's queue state
            in_dlq = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=0).get("Messages", [])
        assert [m["Body"] for m in in_dlq] == ["bad"]
        receives = [r for e in seen for r in e["Records"] if r["body"] == "bad"]
        assert len(receives) == 2, [r["attributes"]["ApproximateReceiveCount"] for r in receives]
    finally:
        p.stop()
        fn.stop()


def test_failed_ids_rules():
    ids = {"a", "b"}
    f = event_sources.failed_ids
    assert f("error", None, ids, True) is None
    assert f("response", None, ids, True) == set()
    assert f("response", {"batchItemFailures": []}, ids, True) == set()
    assert f("response", {"batchItemFailures": [{"itemIdentifier": "a"}]}, ids, True) == {"a"}
    assert f("response", {"batchItemFailures": [{"itemIdentifier": ""}]}, ids, True) is None
    assert f("response", {"batchItemFailures": [{"id": "a"}]}, ids, True) is None
    assert f("response", {"batchItemFailures": [{"itemIdentifier": "z"}]}, ids, True) is None
    assert f("response", "nope", ids, True) is None
    assert f("response", {"batchItemFailures": [{"itemIdentifier": "a"}]}, ids, False) == set()


def test_scheduler_default_event():
    ev = event_sources.scheduler_event({"name": "herald-staging-sweep", "input": None},
                                       "123456789012", "us-east-1", now=0)
    assert ev["source"] == "aws.scheduler" and ev["detail-type"] == "Scheduled Event"
    assert ev["detail"] == "{}" and ev["time"] == "1970-01-01T00:00:00Z"
    assert ev["resources"] == [
        "arn:aws:scheduler:us-east-1:123456789012:schedule/default/herald-staging-sweep"]
    assert event_sources.scheduler_event({"name": "s", "input": '{"a": 1}'}, "1", "r") == {"a": 1}


def test_rotation_leaves_secrets_managers_placeholder(moto):
    import boto3
    import rotation
    sm = boto3.client("secretsmanager", endpoint_url=moto, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    arn = sm.create_secret(Name="t-secret", SecretString='{"v": 0}')["ARN"]
    token = "11111111-2222-3333-4444-555555555555"
    calls = []

    def invoke(event):
        calls.append(event)
        meta = sm.describe_secret(SecretId=arn)
        assert meta["RotationEnabled"] is True
        assert "AWSPENDING" in meta["VersionIdsToStages"][token]
        return ("response", None)
    out = rotation.rotate(sm, moto, arn,
                          "arn:aws:lambda:us-east-1:123456789012:function:rot", 30, invoke,
                          token=token)
    assert out["ok"] and [c["Step"] for c in calls] == list(rotation.STEPS)
    assert all(c["SecretId"] == arn and c["ClientRequestToken"] == token for c in calls)
    # The placeholder has no value (GetSecretValue: ResourceNotFoundException, as on AWS);
    # the current version is untouched.
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        sm.get_secret_value(SecretId=arn, VersionId=token)
    assert sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"] == '{"v": 0}'
    # moto's Lambda is back to its configured backend.
    with urllib.request.urlopen(moto + "/moto-api/config") as r:
        assert json.loads(r.read()).get("lambda", {}).get("use_docker", True) is True
