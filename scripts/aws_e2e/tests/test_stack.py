"""scripts/aws_e2e/stack.py against its own moto server (IAM enforced after SETUP_CALLS).

    .venv/bin/python -m pytest scripts/aws_e2e/tests -q
"""
import json
import os
import pathlib
import subprocess
import sys
import time

import boto3
import botocore
import botocore.config
import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE.parent))

import intrinsics  # noqa: E402
import stack  # noqa: E402


def start_moto(env_extra):
    env = dict(os.environ)
    env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
    env.update(env_extra)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "moto_server.py"), "--until-stdin-closes"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    port = proc.stdout.readline().decode().strip()
    assert port.isdigit(), f"moto_server.py printed {port!r}"
    return proc, f"http://127.0.0.1:{port}"


def stop(proc):
    proc.stdin.close()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    proc, endpoint = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": str(stack.SETUP_CALLS)})
    out = tmp_path_factory.mktemp("stack")
    try:
        started = time.monotonic()
        result = stack.deploy(endpoint, out)
        elapsed = time.monotonic() - started
        yield {"stack": result, "out": out, "endpoint": endpoint, "elapsed": elapsed}
    finally:
        stop(proc)


def session_of(creds):
    return stack.moto_session(creds["access_key_id"], creds["secret_access_key"],
                              creds.get("session_token"))


def client(deployed, creds, service):
    return session_of(creds).client(service, endpoint_url=deployed["endpoint"],
                                    config=botocore.config.Config(retries={"max_attempts": 1}))


def admin(deployed, service):
    return client(deployed, deployed["stack"]["admin"], service)


def denied(e):
    """AccessDenied as AWS answers it: a JSON AccessDeniedException (400) to the JSON-protocol
    services (scripts/moto_server.py rewrites moto's XML 403), AccessDenied (403) to the rest."""
    err = e.value.response
    return (err["ResponseMetadata"]["HTTPStatusCode"], err["Error"].get("Code")) in (
        (400, "AccessDeniedException"), (403, "AccessDenied"))


def test_writes_the_three_files_and_is_fast(deployed):
    out = deployed["out"]
    on_disk = json.loads((out / "stack.json").read_text())
    assert on_disk["functions"].keys() == deployed["stack"]["functions"].keys()
    assert "Transform" not in json.loads((out / "template.translated.json").read_text())
    assert json.loads((out / "template.moto.json").read_text())["Resources"]
    assert deployed["elapsed"] < 30, deployed["elapsed"]


def test_five_functions_with_environments_matching_the_created_resources(deployed):
    s = deployed["stack"]
    fns = s["functions"]
    assert sorted(fns) == ["credential-rotation", "place-call", "retry-processor", "send-sms",
                           "webhook-receiver"]
    tables = set(admin(deployed, "dynamodb").list_tables()["TableNames"])
    queues = admin(deployed, "sqs").list_queues()["QueueUrls"]
    queue_names = {q.rsplit("/", 1)[1] for q in queues}
    key_arns = {k["KeyArn"] for k in admin(deployed, "kms").list_keys()["Keys"]}
    api_id = s["http_api"]["api_id"]
    for name, f in fns.items():
        env = f["environment"]
        for var in ("MESSAGES_TABLE", "EVENTS_TABLE", "STATE_TABLE"):
            assert env[var] in tables, (name, var)
        for var in ("SEND_QUEUE_URL", "SEND_DLQ_URL", "RETRY_QUEUE_URL", "RETRY_DLQ_URL"):
            assert env[var].rsplit("/", 1)[1] in queue_names, (name, var)
        assert env["KMS_KEY_ID"] in key_arns
        assert env["TWILIO_SECRET_ARN"] == s["secret"]["arn"]
        assert "${" not in json.dumps(env), name
        assert env["TWILIO_WEBHOOK_BASE_URL"] == f"https://{api_id}.execute-api.us-east-1.amazonaws.com"
        assert f["timeout"] and f["memory_size"] and f["role_arn"].startswith("arn:aws:iam::")
        assert f["log_group"].startswith("/aws/lambda/")
    assert fns["credential-rotation"]["environment"]["ROTATION_MODE"]


def test_the_http_api_id_is_of_the_real_form(deployed):
    api_id = deployed["stack"]["http_api"]["api_id"]
    assert len(api_id) == 10 and api_id.isalnum() and api_id == api_id.lower()


def test_unknown_and_unsigned_calls_are_refused(deployed):
    stranger = client(deployed, {"access_key_id": "AKIAUNKNOWN000000000",
                                 "secret_access_key": "x"}, "dynamodb")
    with pytest.raises(botocore.exceptions.ClientError):
        stranger.list_tables()
    unsigned = boto3.session.Session(region_name="us-east-1").client(
        "dynamodb", endpoint_url=deployed["endpoint"],
        config=botocore.config.Config(signature_version=botocore.UNSIGNED,
                                      retries={"max_attempts": 1}))
    with pytest.raises(botocore.exceptions.ClientError):
        unsigned.list_tables()


def test_role_credentials_allow_what_the_role_grants_and_refuse_the_rest(deployed):
    f = deployed["stack"]["functions"]["send-sms"]
    ddb = client(deployed, f["credentials"], "dynamodb")
    table = f["environment"]["MESSAGES_TABLE"]
    ddb.put_item(TableName=table, Item={"id": {"S": "msg_stack_test"}})
    assert ddb.get_item(TableName=table, Key={"id": {"S": "msg_stack_test"}})["Item"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ddb.delete_table(TableName=table)
    assert denied(e), str(e.value)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client(deployed, f["credentials"], "sqs").purge_queue(
            QueueUrl=f["environment"]["SEND_QUEUE_URL"])
    assert denied(e), str(e.value)
    # KMS: the statement has a condition (kept in the moto copy); moto evaluates none of it.
    kms = client(deployed, f["credentials"], "kms")
    kms.generate_data_key(KeyId=f["environment"]["KMS_KEY_ID"], NumberOfBytes=32,
                          EncryptionContext={"purpose": "herald-data-key"})
    rot = deployed["stack"]["functions"]["credential-rotation"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client(deployed, rot["credentials"], "kms").generate_data_key(
            KeyId=f["environment"]["KMS_KEY_ID"], NumberOfBytes=32)
    assert denied(e), str(e.value)


def test_the_secret_holds_the_simulators_credentials(deployed):
    s = deployed["stack"]
    f = s["functions"]["send-sms"]
    value = client(deployed, f["credentials"], "secretsmanager").get_secret_value(
        SecretId=f["environment"]["TWILIO_SECRET_ARN"])
    doc = json.loads(value["SecretString"])
    assert doc["account_sid"] == stack.SIM_ACCOUNT_SID
    assert set(doc) == {"account_sid", "api_key_sid", "api_key_secret", "auth_token"}
    assert s["secret"]["name"] == "herald/staging/twilio"
    assert s["secret"]["rotation_function"] == "credential-rotation"
    assert s["secret"]["rotation_days"]


def test_event_source_mappings_and_queues(deployed):
    s = deployed["stack"]
    translated = json.loads((deployed["out"] / "template.translated.json").read_text())
    want = {}
    for lid, r in translated["Resources"].items():
        if r["Type"] == "AWS::Lambda::EventSourceMapping":
            fn = r["Properties"]["FunctionName"]["Ref"]
            want[s["functions"][next(b for b, f in s["functions"].items()
                                     if f["logical_id"] == fn)]["function_name"]] = r["Properties"]
    esms = s["event_source_mappings"]
    assert {e["function"] for e in esms} >= {"send-sms", "retry-processor"}
    for e in esms:
        props = want[s["functions"][e["function"]]["function_name"]]
        assert e["batch_size"] == props["BatchSize"]
        assert e["function_response_types"] == props.get("FunctionResponseTypes", [])
        assert e["maximum_concurrency"] == (props.get("ScalingConfig") or {}).get("MaximumConcurrency")
        assert e["enabled"]
        q = e["queue"]
        assert q["visibility_timeout"] > 0 and q["message_retention"] > 0
        assert q["redrive"] and q["redrive"]["max_receive_count"] > 0
        assert q["redrive"]["dead_letter_arn"].endswith("-dlq")


def test_policies_are_widened_for_moto_and_real_in_policies_real(deployed):
    for name, f in deployed["stack"]["functions"].items():
        assert f["policies"] and f["policies_real"], name
        assert [p["name"] for p in f["policies"]] == [p["name"] for p in f["policies_real"]]
        for pol in f["policies"]:
            for st in pol["document"]["Statement"]:
                assert st.get("Resource", "*") == "*" and st.get("NotResource", "*") == "*"
        real = json.dumps(f["policies_real"])
        assert '"Ref"' not in real and "Fn::" not in real and "${" not in real, name
        resources = [st["Resource"] for p in f["policies_real"] for st in p["document"]["Statement"]]
        flat = [r for rs in resources for r in (rs if isinstance(rs, list) else [rs])]
        assert all(r.startswith("arn:aws:") for r in flat), (name, flat)
    sms = json.dumps(deployed["stack"]["functions"]["send-sms"]["policies_real"])
    assert "arn:aws:dynamodb:us-east-1:123456789012:table/herald-staging-messages" in sms


def test_skipped_resources_and_who_plays_them(deployed):
    s = deployed["stack"]
    skipped = {x["logical_id"]: x for x in s["skipped"]}
    assert skipped["HttpApi"]["played_by"] == "gateway"
    assert any(x["type"] == "AWS::Scheduler::Schedule" and x["played_by"] == "scheduler"
               for x in s["skipped"])
    assert any(x["type"] == "AWS::SecretsManager::Secret" and x["played_by"] == "secret"
               for x in s["skipped"])
    for x in s["skipped"]:
        assert x["played_by"] in ("gateway", "scheduler", "secret", "alarms") or \
            x["played_by"].startswith("none: "), x


def test_http_api_routes_schedules(deployed):
    s = deployed["stack"]
    api = s["http_api"]
    routes = {(r["method"], r["path"]): r for r in api["routes"]}
    assert routes[("GET", "/health")]["authorizer"] is None
    assert routes[("GET", "/v1/health")]["function"] == "send-sms"
    assert routes[("GET", "/v1/health")]["authorizer"] == "jwt"
    post = routes[("POST", "/v1/messages")]
    assert post["function"] == "send-sms" and post["authorizer"] == "jwt"
    assert post["payload_format_version"] == "2.0" and post["timeout_ms"] <= 30000
    assert post["throttle"]["burst"] and post["throttle"]["rate"]
    assert all(r["function"] in s["functions"] for r in api["routes"])
    assert any(r["path"].startswith("/webhooks/") and r["function"] == "webhook-receiver"
               and r["authorizer"] is None for r in api["routes"])
    assert api["jwt"]["issuer"] == "https://issuer.herald.test/"
    assert api["jwt"]["audience"] == ["herald-e2e"]
    assert api["default_throttle"]
    (sched,) = s["schedules"]
    assert sched["target_function"] == "retry-processor"
    assert sched["expression"].startswith(("rate(", "cron("))
    assert sched["name"].startswith("herald-staging")


def test_deploy_fails_without_iam_enforcement(tmp_path):
    proc, endpoint = start_moto({})
    try:
        with pytest.raises(stack.DeployError, match="enforcement is off"):
            stack.deploy(endpoint, tmp_path)
    finally:
        stop(proc)


# -- pure parts ---------------------------------------------------------------------------
def test_splice_includes_only_where_present(tmp_path):
    (tmp_path / "doc.yaml").write_text("openapi: 3.0.1\npaths: {}\n")
    inc = {"A": {"Fn::Transform": {"Name": "AWS::Include", "Parameters": {"Location": "./doc.yaml"}}}}
    assert stack.splice_includes(inc, tmp_path) == {"A": {"openapi": "3.0.1", "paths": {}}}
    inline = {"A": {"openapi": "3.0.1", "paths": {}}}
    assert stack.splice_includes(inline, tmp_path) == inline


def test_widen_keeps_actions_and_conditions():
    doc = {"Statement": [{"Effect": "Allow", "Action": ["a:B"], "Resource": ["arn:x"],
                          "Condition": {"StringEquals": {"k": "v"}}},
                         {"Effect": "Deny", "NotAction": "c:D", "NotResource": "arn:y"}]}
    out = stack.widen_document(doc)
    assert out["Statement"][0] == {"Effect": "Allow", "Action": ["a:B"], "Resource": "*",
                                   "Condition": {"StringEquals": {"k": "v"}}}
    assert out["Statement"][1]["NotResource"] == "*" and out["Statement"][1]["NotAction"] == "c:D"
    assert doc["Statement"][0]["Resource"] == ["arn:x"]


def test_resolver():
    template = {
        "Parameters": {"Stage": {"Type": "String"}, "Empty": {"Type": "String", "Default": ""},
                       "L": {"Type": "CommaDelimitedList", "Default": "a,b"}},
        "Conditions": {"HasEmpty": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Empty"}, ""]}]},
                       "IsStaging": {"Fn::Equals": [{"Ref": "Stage"}, "staging"]}},
        "Resources": {"T": {"Type": "AWS::DynamoDB::Table"}},
    }
    phys = {"T": {"ref": "tbl", "attrs": {"Arn": "arn:aws:dynamodb:us-east-1:1:table/tbl"}}}
    r = intrinsics.Resolver(template, {"Stage": "staging"}, phys, account="1")
    assert r.resolve({"Fn::Sub": "${T.Arn}/index/x"}) == "arn:aws:dynamodb:us-east-1:1:table/tbl/index/x"
    assert r.resolve({"Fn::Sub": ["${A}-${AWS::Region}-${!Lit}", {"A": {"Ref": "T"}}]}) == \
        "tbl-us-east-1-${Lit}"
    assert r.resolve({"x": {"Fn::If": ["HasEmpty", 1, {"Ref": "AWS::NoValue"}]}, "y": 2}) == {"y": 2}
    assert r.resolve([{"Fn::If": ["IsStaging", "s", "p"]}, {"Ref": "AWS::NoValue"}]) == ["s"]
    assert r.resolve({"Fn::Join": ["-", [{"Ref": "Stage"}, {"Fn::Select": [1, {"Ref": "L"}]}]]}) == "staging-b"
    assert r.resolve({"Fn::GetAtt": "T.Arn"}) == phys["T"]["attrs"]["Arn"]
    with pytest.raises(intrinsics.IntrinsicError):
        r.resolve({"Ref": "Missing"})
    with pytest.raises(intrinsics.IntrinsicError):
        r.resolve({"Fn::GetAtt": ["T", "StreamArn"]})


def test_substitute_replaces_only_standins():
    node = {"a": {"Ref": "Api"}, "b": {"Fn::Sub": "https://${Api}.x/${Other}/${!Api}"},
            "c": {"Ref": "Other"}, "d": {"Fn::GetAtt": ["Api", "ApiEndpoint"]}}
    out = intrinsics.substitute(node, {"Api": {"ref": "abc", "attrs": {"ApiEndpoint": "https://abc"}}})
    assert out == {"a": "abc", "b": {"Fn::Sub": "https://abc.x/${Other}/${!Api}"},
                   "c": {"Ref": "Other"}, "d": "https://abc"}
