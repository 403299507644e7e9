"""Tests of the AWS-call recording of scripts/moto_server.py and of the resource-level IAM
check scripts/aws_e2e/iam_check.mjs (run: .venv/bin/python -m pytest scripts/aws_e2e/tests/test_iam.py).

The evaluator's npm dependencies are installed with `npm ci --prefix scripts/aws_e2e` when
scripts/aws_e2e/node_modules is missing, so a fresh clone runs these tests as they are.
"""
import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[3]
E2E = ROOT / "scripts" / "aws_e2e"
REGION = "us-east-1"
ACCOUNT = "123456789012"


@contextlib.contextmanager
def moto_server(extra_env=None, args=()):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION=REGION, **(extra_env or {}))
    env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None) if not extra_env else None
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "moto_server.py"),
                             "--until-stdin-closes", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    try:
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def client(endpoint, service, key="testing", secret="testing", token=None):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        aws_session_token=token,
                        config=Config(retries={"max_attempts": 1}))


def get_json(url, method="GET"):
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as r:
        return json.loads(r.read())


def records(endpoint):
    return get_json(f"{endpoint}/_herald/record")


# ------------------------------------------------------------------------------------------
# (a) recording, no enforcement


def test_records_actions_resources_and_context(tmp_path):
    jsonl = tmp_path / "calls.jsonl"
    with moto_server(args=("--record", str(jsonl))) as ep:
        ddb = client(ep, "dynamodb")
        ddb.create_table(
            TableName="msgs", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "caller", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[{"IndexName": "by_caller",
                                     "KeySchema": [{"AttributeName": "caller", "KeyType": "HASH"}],
                                     "Projection": {"ProjectionType": "ALL"}}])
        sqs = client(ep, "sqs")
        url = sqs.create_queue(QueueName="send")["QueueUrl"]
        kms = client(ep, "kms")
        key = kms.create_key()["KeyMetadata"]
        kms.create_alias(AliasName="alias/herald-test", TargetKeyId=key["KeyId"])
        sm = client(ep, "secretsmanager")
        secret = sm.create_secret(Name="herald/test/twilio", SecretString="{}")
        get_json(f"{ep}/_herald/record", "DELETE")

        ddb.put_item(TableName="msgs", Item={"pk": {"S": "a"}, "caller": {"S": "c"}})
        ddb.query(TableName="msgs", IndexName="by_caller",
                  KeyConditionExpression="caller = :c",
                  ExpressionAttributeValues={":c": {"S": "c"}})
        ddb.batch_write_item(RequestItems={"msgs": [{"PutRequest": {"Item": {"pk": {"S": "b"}}}}]})
        sqs.send_message(QueueUrl=url, MessageBody="x")
        dk = kms.generate_data_key(KeyId="alias/herald-test", KeySpec="AES_256",
                                   EncryptionContext={"purpose": "herald-data-key"})
        kms.decrypt(CiphertextBlob=dk["CiphertextBlob"],
                    EncryptionContext={"purpose": "herald-data-key"})
        sm.get_secret_value(SecretId="herald/test/twilio")
        with pytest.raises(ClientError):
            sm.get_secret_value(SecretId="herald/test/missing")

        recs = records(ep)
        assert get_json(f"{ep}/_herald/calls")["dynamodb:PutItem"] == 1  # counts kept
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/msgs"
    got = [(r["action"], r["resource"]) for r in recs]
    assert got == [
        ("dynamodb:PutItem", table),
        ("dynamodb:Query", f"{table}/index/by_caller"),
        ("dynamodb:BatchWriteItem", table),
        ("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:send"),
        ("kms:GenerateDataKey", key["Arn"]),
        ("kms:Decrypt", key["Arn"]),  # no KeyId: the key the ciphertext belongs to
        ("secretsmanager:GetSecretValue", secret["ARN"]),  # name resolved to the full ARN
        ("secretsmanager:GetSecretValue",
         f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:herald/test/missing-??????"),
    ]
    assert all(r["access_key_id"] == "testing" for r in recs)
    assert [r["status"] for r in recs][:-1] == [200] * 7
    assert recs[-1]["status"] >= 400 and recs[-1]["error"] == "ResourceNotFoundException"
    assert all(r["error"] is None for r in recs[:-1])
    gdk = recs[4]["context"]
    assert gdk["kms:EncryptionContext:purpose"] == "herald-data-key"
    assert gdk["kms:EncryptionContextKeys"] == ["purpose"]
    assert gdk["kms:CallerAccount"] == ACCOUNT
    assert gdk["kms:RequestAlias"] == "alias/herald-test"
    assert "kms:ViaService" not in gdk
    assert recs[5]["context"]["kms:EncryptionContext:purpose"] == "herald-data-key"
    assert recs[6]["context"]["secretsmanager:SecretId"] == "herald/test/twilio"
    lines = [json.loads(l) for l in jsonl.read_text().splitlines()]
    assert [(r["action"], r["resource"]) for r in lines[-len(recs):]] == got


def test_records_query_protocol_and_rest_services():
    with moto_server() as ep:
        # botocore's SQS speaks JSON; the query protocol is what older clients send.
        body = "Action=CreateQueue&QueueName=q1&Version=2012-11-05".encode()
        sqs = client(ep, "sqs")
        sqs.create_queue(QueueName="q0")
        req = urllib.request.Request(ep + "/", data=body, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDQUERY/20250101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0"})
        urllib.request.urlopen(req, timeout=30).read()
        sts = client(ep, "sts")
        sts.get_caller_identity()
        iam = client(ep, "iam")
        iam.create_role(RoleName="r1", AssumeRolePolicyDocument="{}")
        lam = client(ep, "lambda")
        with pytest.raises(ClientError):
            lam.get_function_configuration(FunctionName="herald-staging-send-sms")
        lam.list_event_source_mappings()
        recs = records(ep)
    got = [(r["access_key_id"], r["action"], r["resource"]) for r in recs]
    assert got[1] == ("AKIDQUERY", "sqs:CreateQueue", f"arn:aws:sqs:{REGION}:{ACCOUNT}:q1")
    assert got[2] == ("testing", "sts:GetCallerIdentity", "*")
    assert got[3] == ("testing", "iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/r1")
    assert got[4] == ("testing", "lambda:GetFunctionConfiguration",
                      f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:herald-staging-send-sms")
    assert recs[4]["status"] == 404 and recs[4]["error"] == "ResourceNotFoundException"
    assert got[5] == ("testing", "lambda:ListEventSourceMappings", "*")


# ------------------------------------------------------------------------------------------
# (b) recording with IAM enforcement


# moto checks the role's trust policy on AssumeRole (moto/iam/access_control.py
# _check_role_trust_relationship) and matches only a principal ARN equal to the caller's (or
# "*"; not the account root): a role trusting only lambda.amazonaws.com cannot be assumed by the
# admin user once IAM is enforced, so the test role also trusts the admin user by its ARN.
TRUST = {"Service": "lambda.amazonaws.com", "AWS": f"arn:aws:iam::{ACCOUNT}:user/admin"}


def test_records_with_iam_enforced():
    # Three set-up calls unauthenticated (CreateUser, PutUserPolicy, CreateAccessKey); every
    # call after them is authenticated and authorised by moto.
    with moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "3"}) as ep:
        iam = client(ep, "iam")
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="admin", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        k = iam.create_access_key(UserName="admin")["AccessKey"]
        admin = dict(key=k["AccessKeyId"], secret=k["SecretAccessKey"])
        # the /_herald endpoints are neither authenticated nor counted as AWS calls
        assert get_json(f"{ep}/_herald/calls") == {}
        get_json(f"{ep}/_herald/record", "DELETE")
        assert records(ep) == []

        ddb_admin = client(ep, "dynamodb", **admin)
        ddb_admin.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                               AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                               KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        iam_admin = client(ep, "iam", **admin)
        role_arn = iam_admin.create_role(RoleName="fn", AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": TRUST}]}))["Role"]["Arn"]
        iam_admin.put_role_policy(RoleName="fn", PolicyName="fn", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": "*"}]}))
        creds = client(ep, "sts", **admin).assume_role(
            RoleArn=role_arn, RoleSessionName="fn")["Credentials"]
        role = client(ep, "dynamodb", creds["AccessKeyId"], creds["SecretAccessKey"],
                      creds["SessionToken"])
        role.put_item(TableName="t", Item={"pk": {"S": "a"}})
        with pytest.raises(ClientError) as refused:
            role.delete_item(TableName="t", Key={"pk": {"S": "a"}})
        # moto refuses in XML (403) even to JSON-protocol services; scripts/moto_server.py
        # answers as AWS does: 400 with a JSON AccessDeniedException.
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
        assert "is not authorized to perform: dynamodb:DeleteItem" in str(refused.value)
        recs = records(ep)
        assert get_json(f"{ep}/_herald/calls")["dynamodb:DeleteItem"] == 1
    assert recs[3]["action"] == "sts:AssumeRole" and recs[3]["resource"] == role_arn
    assert recs[3]["access_key_id"] == admin["key"]
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t"
    put, delete = recs[-2], recs[-1]
    assert (put["access_key_id"], put["action"], put["resource"], put["status"], put["error"]) == \
        (creds["AccessKeyId"], "dynamodb:PutItem", table, 200, None)
    assert (delete["access_key_id"], delete["action"], delete["resource"], delete["status"],
            delete["error"]) == (creds["AccessKeyId"], "dynamodb:DeleteItem", table, 400,
                                 "AccessDeniedException")


# ------------------------------------------------------------------------------------------
# (c) the evaluator


@pytest.fixture(scope="module")
def node_modules():
    if not (E2E / "node_modules" / "@cloud-copilot" / "iam-simulate").is_dir():
        subprocess.run(["npm", "ci", "--prefix", str(E2E), "--no-audit", "--no-fund"],
                       check=True, timeout=600)
    return E2E / "node_modules"


def iam_check(node_modules, *args):
    return subprocess.run(["node", str(E2E / "iam_check.mjs"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


FUNCTION_KEY = "ASIAFUNCTIONSENDSMS"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/herald-staging-SendSmsRole"


def policy(table_a, key_arn, *extra):
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "Messages", "Effect": "Allow", "Action": ["dynamodb:PutItem"],
         "Resource": table_a},
        {"Sid": "DataKeys", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
         "Resource": key_arn,
         "Condition": {"StringEquals": {"kms:EncryptionContext:purpose": "herald-data-key"}}},
        *extra]}


@pytest.fixture(scope="module")
def recorded():
    """Calls a function made, recorded by moto_server.py: PutItem on A and on B, GenerateDataKey
    with the right encryption context and with a wrong one, Decrypt with the right one."""
    with moto_server() as ep:
        ddb = client(ep, "dynamodb")
        for t in ("A", "B"):
            ddb.create_table(TableName=t, BillingMode="PAY_PER_REQUEST",
                             AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                             KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        kms = client(ep, "kms")
        key = kms.create_key()["KeyMetadata"]
        kms.create_alias(AliasName="alias/herald-staging", TargetKeyId=key["KeyId"])
        get_json(f"{ep}/_herald/record", "DELETE")
        fn_ddb = client(ep, "dynamodb", FUNCTION_KEY, "x", "token")
        fn_kms = client(ep, "kms", FUNCTION_KEY, "x", "token")
        fn_ddb.put_item(TableName="A", Item={"pk": {"S": "1"}})
        fn_ddb.put_item(TableName="B", Item={"pk": {"S": "1"}})
        good = fn_kms.generate_data_key(KeyId="alias/herald-staging", KeySpec="AES_256",
                                        EncryptionContext={"purpose": "herald-data-key"})
        fn_kms.generate_data_key(KeyId="alias/herald-staging", KeySpec="AES_256",
                                 EncryptionContext={"purpose": "something-else"})
        fn_kms.decrypt(CiphertextBlob=good["CiphertextBlob"],
                       EncryptionContext={"purpose": "herald-data-key"})
        return {"calls": records(ep), "key_arn": key["Arn"],
                "table": lambda t: f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{t}"}


def write_input(tmp_path, recorded, calls, *extra_statements):
    doc = {"functions": {"send-sms": {
        "access_key_id": FUNCTION_KEY, "role_arn": ROLE_ARN,
        "policies": [{"name": "herald-send-sms",
                      "document": policy(recorded["table"]("A"), recorded["key_arn"],
                                         *extra_statements)}]}},
        "calls": calls}
    path = tmp_path / "input.json"
    path.write_text(json.dumps(doc))
    return path


def test_evaluator_denies_wrong_resource_and_wrong_context(tmp_path, node_modules, recorded):
    empty = tmp_path / "ok.json"
    empty.write_text("{}")
    out = tmp_path / "report.json"
    r = iam_check(node_modules, "--input", write_input(tmp_path, recorded, recorded["calls"]),
                  "--allow-unused", empty, "--json", out)
    assert r.returncode == 1, r.stdout + r.stderr
    report = json.loads(out.read_text())
    assert report["evaluated"] == 5 and report["unattributed"] == 0
    denied = [(d["function"], d["action"], d["resource"]) for d in report["denied"]]
    assert denied == [
        ("send-sms", "dynamodb:PutItem", recorded["table"]("B")),
        ("send-sms", "kms:GenerateDataKey", recorded["key_arn"]),
    ]
    assert report["denied"][0]["expected_statements"] == [
        {"statement": "send-sms/Messages", "why": "resource does not match"}]
    assert report["denied"][1]["context"]["kms:EncryptionContext:purpose"] == "something-else"
    assert report["denied"][1]["expected_statements"] == [
        {"statement": "send-sms/DataKeys", "why": "condition not met"}]
    # the right context is allowed (GenerateDataKey and Decrypt), by DataKeys
    assert report["used"] == {"send-sms/Messages": 1, "send-sms/DataKeys": 2}
    assert report["unused"] == []
    assert "DENIED send-sms: dynamodb:PutItem on " + recorded["table"]("B") in r.stdout
    assert "expected statement send-sms/DataKeys: condition not met" in r.stdout


def test_evaluator_passes_allowed_calls_and_skips_expected_denials(tmp_path, node_modules, recorded):
    empty = tmp_path / "ok.json"
    empty.write_text("{}")
    calls = recorded["calls"]
    wrong_context = [c for c in calls if c["context"].get("kms:EncryptionContext:purpose") == "something-else"]
    assert len(wrong_context) == 1
    # moto (no enforcement here) answered them; in the run, the negative control's call is
    # refused by moto (HTTP 403, AccessDenied), and only a refused call is skipped.
    refused = dict(status=403, error="AccessDenied")
    marked = [dict(c, expected_denial=True, **refused) if c in wrong_context
              else dict(c, **refused) if c["resource"] == recorded["table"]("B") else c
              for c in calls]
    expect = tmp_path / "expected.json"
    expect.write_text(json.dumps([{"function": "send-sms", "action": "dynamodb:PutItem",
                                   "resource": recorded["table"]("B")}]))
    r = iam_check(node_modules, "--input", write_input(tmp_path, recorded, marked),
                  "--allow-unused", empty, "--expect-denied", expect)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 expected denials skipped" in r.stdout
    assert "iam_check: ok" in r.stdout
    # a call matching an expected denial that was not refused is still evaluated
    r = iam_check(node_modules, "--input", write_input(tmp_path, recorded, calls),
                  "--allow-unused", empty, "--expect-denied", expect)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "DENIED send-sms: dynamodb:PutItem on " + recorded["table"]("B") in r.stdout
    assert "note: expected denial send-sms dynamodb:PutItem matched no refused call" in r.stdout


def test_evaluator_catches_unused_statement_unless_allow_listed(tmp_path, node_modules, recorded):
    allowed = [c for c in recorded["calls"]
               if c["resource"] != recorded["table"]("B")
               and c["context"].get("kms:EncryptionContext:purpose") != "something-else"]
    queue = {"Sid": "Enqueue", "Effect": "Allow", "Action": ["sqs:SendMessage"],
             "Resource": f"arn:aws:sqs:{REGION}:{ACCOUNT}:herald-staging-send"}
    path = write_input(tmp_path, recorded, allowed, queue)
    empty = tmp_path / "ok.json"
    empty.write_text("{}")
    r = iam_check(node_modules, "--input", path, "--allow-unused", empty)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "UNUSED send-sms/Enqueue (sqs:SendMessage)" in r.stdout
    ok = tmp_path / "unused_ok.json"
    ok.write_text(json.dumps({"send-sms/Enqueue": "kept for the test"}))
    r = iam_check(node_modules, path, "--allow-unused", ok)  # INPUT_JSON alone is --input
    assert r.returncode == 0, r.stdout + r.stderr
    assert "unused send-sms/Enqueue, kept: kept for the test" in r.stdout


def test_evaluator_reads_stack_json_and_jsonl(tmp_path, node_modules, recorded):
    allowed = [c for c in recorded["calls"] if c["resource"] != recorded["table"]("B")
               and c["context"].get("kms:EncryptionContext:purpose") != "something-else"]
    stack = {"account": ACCOUNT, "functions": {"send-sms": {
        "role_arn": ROLE_ARN,
        "credentials": {"access_key_id": FUNCTION_KEY, "secret_access_key": "x", "session_token": "t"},
        "policies": [{"name": "herald-send-sms", "document": {"Version": "2012-10-17", "Statement": [
            {"Sid": "Wide", "Effect": "Allow", "Action": "*", "Resource": "*"}]}}],
        "policies_real": [{"name": "herald-send-sms",
                           "document": policy(recorded["table"]("A"), recorded["key_arn"])}]}}}
    (tmp_path / "stack.json").write_text(json.dumps(stack))
    (tmp_path / "calls.jsonl").write_text("".join(json.dumps(c) + "\n" for c in allowed))
    empty = tmp_path / "ok.json"
    empty.write_text("{}")
    r = iam_check(node_modules, "--stack", tmp_path / "stack.json", "--calls",
                  tmp_path / "calls.jsonl", "--allow-unused", empty)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "used send-sms/DataKeys: 2 call(s)" in r.stdout
