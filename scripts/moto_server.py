"""A moto server (AWS stand-in) on 127.0.0.1, on a port the OS picks, serving one request at a
time: moto checks a DynamoDB condition expression and then writes in two steps, so its usual
threaded server lets two concurrent conditional writes both pass, which DynamoDB never does.

Every AWS API call is counted by its IAM action (`dynamodb:PutItem`, `kms:Decrypt`, ...):
`GET /_herald/calls` returns the counts as JSON, `DELETE /_herald/calls` resets them. The
template's least-privilege test (infra/tests) and the cost model (scripts/bench.sh) read them.

Every AWS API call is also recorded, for the resource-level IAM check
(scripts/aws_e2e/iam_check.mjs): who made it (the access key of its SigV4 signature, i.e. the
role session of the function that made it), the IAM action, the resource ARN IAM would evaluate,
the request context keys conditions can test (KMS encryption context, ...), and moto's answer.
Recording at the emulator sees exactly what AWS would receive, whatever client sent it.
`GET /_herald/record` returns the records as a JSON list, `DELETE /_herald/record` clears them;
`--record PATH` also appends each record to PATH as a JSON line. One record:

    {"seq": 7, "access_key_id": "ASIA...", "service": "kms", "region": "us-east-1",
     "account": "123456789012", "operation": "GenerateDataKey",
     "action": "kms:GenerateDataKey",
     "resource": "arn:aws:kms:us-east-1:123456789012:key/<id>",
     "context": {"kms:EncryptionContext:purpose": "herald-data-key",
                 "kms:EncryptionContextKeys": ["purpose"], "kms:CallerAccount": "123456789012"},
     "status": 200, "error": null}

A call that touches several resources (BatchWriteItem over two tables) gives one record per
resource; a DynamoDB transaction gives one record per item, under the action IAM checks for
it (TransactWriteItems' Put is `dynamodb:PutItem`), with "operation": "TransactWriteItems".
"resource" is "*" where the action takes no resource or none could be derived.

IAM enforcement: with INITIAL_NO_AUTH_ACTION_COUNT=N in its environment, moto serves the first N
AWS calls unauthenticated and then checks each call's signature and the caller's IAM policies
(actions only). The /_herald/* endpoints never reach moto: they are neither counted nor
authenticated, and they work the same with enforcement on.

If scripts/moto_clock.py is present, `POST /_herald/clock` ({"advance_secs": N}) moves SQS's
clock forward and `GET /_herald/clock` reads the offset ({"offset_secs": X}).

Prints the port on the first line of stdout. With --until-stdin-closes it exits when its stdin
closes (tests that spawn it); otherwise it serves until killed (scripts/test.sh).
"""
import argparse
import base64
import collections
import io
import json
import os
import re
import sys
import threading
from urllib.parse import parse_qs, unquote, urlparse

from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import moto_clock
except ImportError:  # the clock is optional
    moto_clock = None
else:
    moto_clock.install()

inner = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()
calls = collections.Counter()
records = []
record_file = None

# X-Amz-Target prefixes of the JSON protocols, by IAM service prefix.
TARGETS = {
    "DynamoDB_20120810": "dynamodb",
    "TrentService": "kms",
    "secretsmanager": "secretsmanager",
    "AmazonSQS": "sqs",
}

# For records: more JSON-protocol prefixes; an unknown one falls back to the signing name.
RECORD_TARGETS = dict(
    TARGETS,
    Logs_20140328="logs",
    AWSEvents="events",
    AmazonSSM="ssm",
    AWSStepFunctions="states",
    GraniteServiceVersion20100801="cloudwatch",
)

# SigV4 signing name -> IAM service prefix, where they differ.
SIGNING_TO_IAM = {"monitoring": "cloudwatch", "email": "ses", "execute-api": "execute-api"}

# API operation -> IAM action, where the names differ.
OPERATION_TO_ACTION = {
    ("lambda", "Invoke"): "InvokeFunction",
    ("lambda", "InvokeWithResponseStream"): "InvokeFunction",
    # SQS batch operations are authorized by their single action.
    ("sqs", "SendMessageBatch"): "SendMessage",
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility",
}

# DynamoDB transaction items -> the action IAM checks for each.
TRANSACT_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}

CREDENTIAL_RE = re.compile(r"Credential=([^/,\s]+)/[^/]*/([^/]*)/([^/]*)/")


def action_of(environ):
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if "." in target:
        prefix, name = target.split(".", 1)
        return f"{TARGETS.get(prefix, prefix)}:{name}"
    return None


# ---------------------------------------------------------------------------------------------
# Recording


def read_body(environ):
    """Reads the whole request body and puts it back for moto."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH")
    if length:
        body = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
        environ["CONTENT_LENGTH"] = str(len(body))
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def credential_of(environ, query):
    """(access key id, region, signing name) from the SigV4 Authorization header or a
    presigned URL's X-Amz-Credential; Nones for an unsigned request."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = CREDENTIAL_RE.search(auth)
    if m:
        return m.group(1), m.group(2), m.group(3)
    cred = (query.get("X-Amz-Credential") or [""])[0]
    parts = cred.split("/")
    if len(parts) >= 4:
        return parts[0], parts[2], parts[3]
    return None, None, None


_rest_routes = {}


def rest_routes(signing_name):
    """[(method, regex, literal length, operation, required query keys)] from botocore's model
    of the REST services signed as `signing_name`, loaded once."""
    if signing_name in _rest_routes:
        return _rest_routes[signing_name]
    routes = []
    try:
        from botocore.loaders import create_loader

        loader = create_loader()
        names = {"apigateway": ["apigatewayv2", "apigateway"]}.get(signing_name, [signing_name])
        for name in names:
            try:
                model = loader.load_service_model(name, "service-2")
            except Exception:
                continue
            for op, spec in model.get("operations", {}).items():
                http = spec.get("http", {})
                uri = http.get("requestUri", "/")
                path, _, query = uri.partition("?")
                regex = "^"
                literal = 0
                for piece in re.split(r"(\{[^}]+\})", path):
                    if piece.startswith("{"):
                        regex += "(.+)" if piece.endswith("+}") else "([^/]+)"
                    else:
                        regex += re.escape(piece)
                        literal += len(piece)
                regex += "/?$"
                keys = [q.split("=")[0] for q in query.split("&") if q]
                routes.append((http.get("method", "POST"), re.compile(regex), literal, op, keys,
                               re.findall(r"\{([^}+]+)\+?\}", path)))
    except Exception:
        pass
    _rest_routes[signing_name] = routes
    return routes


def rest_operation(signing_name, method, path, query):
    """(operation, path parameters) of a REST request, or (None, {})."""
    best = None
    for m, regex, literal, op, keys, names in rest_routes(signing_name):
        if m != method or any(k not in query for k in keys):
            continue
        match = regex.match(path)
        if match and (best is None or literal > best[0]):
            best = (literal, op, dict(zip(names, (unquote(g) for g in match.groups()))))
    return (best[1], best[2]) if best else (None, {})


def error_of(status, headers, body):
    if status < 300:
        return None
    for k, v in headers:
        if k.lower() == "x-amzn-errortype" and v:
            return v.split(":")[0]
    text = body[:4096].decode("utf-8", "replace")
    try:
        doc = json.loads(text)
        code = doc.get("__type") or doc.get("code") or doc.get("Code") or doc.get("Type")
        if code:
            return str(code).split("#")[-1]
    except (ValueError, AttributeError):
        pass
    m = re.search(r"<Code>([^<]+)</Code>", text)
    return m.group(1) if m else f"HTTP{status}"


def backend(name, account, region):
    import moto.backends

    return moto.backends.get_backend(name)[account][region]


def kms_key(account, region, key_id):
    try:
        kms = backend("kms", account, region)
        return kms.keys[kms.any_id_to_key_id(key_id)]
    except Exception:
        return None


def kms_records(op, params, account, region, caller_account):
    key_id = params.get("KeyId") or params.get("DestinationKeyId")
    if not key_id and params.get("CiphertextBlob"):
        try:
            from moto.kms.utils import _deserialize_ciphertext_blob

            key_id = _deserialize_ciphertext_blob(
                base64.b64decode(params["CiphertextBlob"])).key_id
        except Exception:
            key_id = None
    context = {"kms:CallerAccount": caller_account}
    resource = "*"
    if key_id:
        key = kms_key(account, region, key_id)
        if key is not None:
            resource = key.arn
            context.update({"kms:KeySpec": key.key_spec, "kms:KeyUsage": key.key_usage,
                            "kms:KeyOrigin": key.origin,
                            "kms:MultiRegion": "true" if key.multi_region else "false"})
        elif key_id.startswith("arn:"):
            resource = key_id
        else:
            resource = f"arn:aws:kms:{region}:{account}:{key_id if key_id.startswith('alias/') else 'key/' + key_id}"
        if key_id.startswith("alias/") or ":alias/" in key_id:
            context["kms:RequestAlias"] = "alias/" + key_id.split("alias/", 1)[1]
    if op in ("CreateAlias", "DeleteAlias", "UpdateAlias") and params.get("AliasName"):
        alias = f"arn:aws:kms:{region}:{account}:{params['AliasName']}"
        recs = [(alias, context)]
        if resource != "*":
            recs.append((resource, context))
        return recs
    ec = params.get("EncryptionContext") or params.get("DestinationEncryptionContext")
    if isinstance(ec, dict):
        for k, v in ec.items():
            context[f"kms:EncryptionContext:{k}"] = v
        if ec:
            context["kms:EncryptionContextKeys"] = sorted(ec)
    if params.get("EncryptionAlgorithm"):
        context["kms:EncryptionAlgorithm"] = params["EncryptionAlgorithm"]
    return [(resource, context)]


def dynamodb_records(op, params, account, region):
    def arn(table, index=None):
        a = f"arn:aws:dynamodb:{region}:{account}:table/{table}"
        return f"{a}/index/{index}" if index else a

    context = {}
    for key, ckey in (("Select", "dynamodb:Select"), ("ReturnValues", "dynamodb:ReturnValues"),
                      ("ReturnConsumedCapacity", "dynamodb:ReturnConsumedCapacity")):
        if params.get(key):
            context[ckey] = params[key]
    if op in ("BatchWriteItem", "BatchGetItem"):
        return [(None, arn(t), context) for t in (params.get("RequestItems") or {})]
    if op in ("TransactWriteItems", "TransactGetItems"):
        out = []
        for item in params.get("TransactItems") or []:
            for kind, spec in item.items():
                out.append((TRANSACT_ITEM_ACTIONS.get(kind, op), arn(spec.get("TableName")), context))
        return out
    table = params.get("TableName")
    if op == "ListTables" or not table:
        return [(None, "*", context)]
    if table.startswith("arn:"):
        return [(None, table, context)]
    return [(None, arn(table, params.get("IndexName")), context)]


def sqs_queue_arn(url, region, account):
    path = urlparse(url).path.strip("/").split("/")
    if len(path) >= 2:
        return f"arn:aws:sqs:{region}:{path[-2]}:{path[-1]}"
    return f"arn:aws:sqs:{region}:{account}:{path[-1]}" if path and path[-1] else "*"


def secret_arn(secret_id, account, region):
    try:
        secret = backend("secretsmanager", account, region).secrets.get(secret_id)
        if secret is not None:
            return secret.arn
    except Exception:
        pass
    if secret_id.startswith("arn:"):
        return secret_id
    return f"arn:aws:secretsmanager:{region}:{account}:secret:{secret_id}-??????"


def logs_resource(op, params, region, account):
    group = params.get("logGroupName") or params.get("logGroupIdentifier")
    if not group:
        return "*"
    if group.startswith("arn:"):
        return group
    base = f"arn:aws:logs:{region}:{account}:log-group:{group}"
    stream = params.get("logStreamName")
    if op == "PutLogEvents" and stream:
        return f"{base}:log-stream:{stream}"
    return base


def resources_of(service, op, params, account, region, caller_account, path):
    """[(action override or None, resource ARN, context)] of one call."""
    if service == "dynamodb":
        return dynamodb_records(op, params, account, region)
    if service == "kms":
        return [(None, r, c) for r, c in kms_records(op, params, account, region, caller_account)]
    if service == "sqs":
        url = params.get("QueueUrl")
        if url:
            return [(None, sqs_queue_arn(url, region, account), {})]
        if params.get("QueueName"):
            owner = params.get("QueueOwnerAWSAccountId") or account
            return [(None, f"arn:aws:sqs:{region}:{owner}:{params['QueueName']}", {})]
        if re.match(r"^/\d{12}/[^/]+/?$", path):  # query protocol sent to the queue's URL
            return [(None, sqs_queue_arn(path, region, account), {})]
        return [(None, "*", {})]
    if service == "secretsmanager":
        sid = params.get("SecretId") or params.get("Name")
        context = {}
        for key, ckey in (("VersionStage", "secretsmanager:VersionStage"),
                          ("VersionId", "secretsmanager:VersionId")):
            if params.get(key):
                context[ckey] = params[key]
        if params.get("SecretId"):
            context["secretsmanager:SecretId"] = params["SecretId"]
        return [(None, secret_arn(sid, account, region) if sid else "*", context)]
    if service == "logs":
        return [(None, logs_resource(op, params, region, account), {})]
    if service == "sts":
        if params.get("RoleArn"):
            return [(None, params["RoleArn"], {})]
        return [(None, "*", {})]
    if service == "iam":
        for key, kind in (("RoleName", "role"), ("UserName", "user"),
                          ("InstanceProfileName", "instance-profile"), ("GroupName", "group")):
            if params.get(key):
                return [(None, f"arn:aws:iam::{account}:{kind}/{params[key]}", {})]
        if params.get("PolicyArn"):
            return [(None, params["PolicyArn"], {})]
        return [(None, "*", {})]
    if service == "cloudformation":
        name = params.get("StackName")
        if name:
            try:
                return [(None, backend("cloudformation", account, region).get_stack(name).stack_id, {})]
            except Exception:
                if name.startswith("arn:"):
                    return [(None, name, {})]
        return [(None, "*", {})]
    if service == "lambda":
        fn = params.get("FunctionName")
        if fn:
            if not fn.startswith("arn:"):
                fn = f"arn:aws:lambda:{region}:{account}:function:{fn}"
            return [(None, fn, {})]
        if params.get("UUID"):
            return [(None, f"arn:aws:lambda:{region}:{account}:event-source-mapping:{params['UUID']}", {})]
        return [(None, "*", {})]
    if service == "sns" and params.get("TopicArn"):
        return [(None, params["TopicArn"], {})]
    return [(None, "*", {})]


def records_of(environ, body, status, headers, out_body):
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "/")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    access_key, region, signing = credential_of(environ, query)
    region = region or "us-east-1"
    iam_service = SIGNING_TO_IAM.get(signing, signing)
    ctype = environ.get("CONTENT_TYPE", "")
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    params = {}
    op = None
    if "." in target:
        prefix, op = target.split(".", 1)
        iam_service = RECORD_TARGETS.get(prefix, iam_service or prefix)
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = {}
    else:
        m = re.match(r"^/service/([^/]+)/operation/([^/]+)$", path)  # smithy rpc-v2-cbor
        form = dict(query)
        if ctype.startswith("application/x-www-form-urlencoded") and body:
            form.update(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True))
        if m:
            iam_service = RECORD_TARGETS.get(m.group(1), iam_service)
            op = m.group(2)
        elif "Action" in form:
            params = {k: v[0] for k, v in form.items()}
            op = params.get("Action")
            if iam_service is None:
                iam_service = {"AssumeRoleWithWebIdentity": "sts"}.get(op)
        elif signing:
            op, params = rest_operation(signing, method, path, query)
            params.update({k: v[0] for k, v in query.items()})
            if body and ctype.startswith("application/json"):
                try:
                    doc = json.loads(body)
                    if isinstance(doc, dict):
                        params = {**doc, **params}
                except ValueError:
                    pass
    caller_account = account = "123456789012"
    if access_key:
        try:
            from moto.iam.models import get_account_id_from

            caller_account = account = get_account_id_from(access_key)
        except Exception:
            pass
    if op is None or iam_service is None:
        action = None
        resources = [(None, "*", {})]
    else:
        action_name = OPERATION_TO_ACTION.get((iam_service, op), op)
        action = f"{iam_service}:{action_name}"
        try:
            resources = resources_of(iam_service, op, params, account, region, caller_account, path)
        except Exception as e:  # never lose a record to a parsing slip
            resources = [(None, "*", {"herald:record-error": repr(e)})]
    error = error_of(status, headers, out_body)
    out = []
    for override, resource, context in resources or [(None, "*", {})]:
        out.append({
            "access_key_id": access_key,
            "service": iam_service,
            "region": region,
            "account": account,
            "operation": op,
            "action": f"{iam_service}:{override}" if override else action,
            "resource": resource,
            "context": context,
            "status": status,
            "error": error,
        })
    return out


# ---------------------------------------------------------------------------------------------
# The WSGI app


def json_answer(start_response, value, status="200 OK"):
    body = json.dumps(value).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def herald_endpoint(environ, start_response):
    path = environ.get("PATH_INFO")
    method = environ.get("REQUEST_METHOD")
    with lock:
        if path == "/_herald/calls":
            if method == "DELETE":
                calls.clear()
            return json_answer(start_response, dict(sorted(calls.items())))
        if path == "/_herald/record":
            if method == "DELETE":
                records.clear()
            return json_answer(start_response, records)
        if path == "/_herald/clock" and moto_clock is not None:
            if method == "POST":
                try:
                    doc = json.loads(read_body(environ) or b"{}")
                    moto_clock.advance(float(doc.get("advance_secs", 0)))
                except (ValueError, TypeError, AttributeError) as e:
                    return json_answer(start_response, {"error": str(e)}, "400 Bad Request")
            return json_answer(start_response, {"offset_secs": moto_clock.offset()})
    return json_answer(start_response, {"error": "no such endpoint"}, "404 Not Found")


def as_aws_answers(environ, status_line, headers, out):
    """moto refuses a call its IAM check denies in XML (`<Code>AccessDenied</Code>`, 403), also
    to the JSON protocols (DynamoDB, KMS, Secrets Manager, SQS), whose clients then see an
    unparsed 403. AWS answers those with a JSON error (400, `__type` AccessDeniedException,
    "User: … is not authorized to perform: …"): so does this server, so that a refusal reaches
    Herald's code as the error it is on AWS."""
    if not environ.get("HTTP_X_AMZ_TARGET") or not status_line.startswith("403"):
        return status_line, headers, out
    text = b"".join(out).decode("utf-8", "replace")
    code = re.search(r"<Code>([^<]+)</Code>", text)
    if not code:
        return status_line, headers, out
    message = re.search(r"<Message>([^<]*)</Message>", text)
    kind = {"AccessDenied": "AccessDeniedException"}.get(code.group(1), code.group(1))
    body = json.dumps({"__type": kind, "message": message.group(1) if message else kind}).encode()
    return "400 Bad Request", [
        ("Content-Type", "application/x-amz-json-1.0"),
        ("x-amzn-ErrorType", kind),
        ("Content-Length", str(len(body))),
    ], [body]


def app(environ, start_response):
    if environ.get("PATH_INFO", "").startswith("/_herald/"):
        return herald_endpoint(environ, start_response)
    with lock:
        action = action_of(environ)
        if action:
            calls[action] += 1
        body = read_body(environ)
        answer = []

        def recording_start_response(status, headers, exc_info=None):
            answer[:] = [int(status.split()[0]), list(headers), status]
            return lambda _data: None  # the answer is written once it is complete

        out = list(inner(environ, recording_start_response))
        status_line, out_headers, out = as_aws_answers(environ, answer[2], answer[1], out)
        start_response(status_line, out_headers)
        if not environ.get("PATH_INFO", "").startswith("/moto-api"):
            try:
                new = records_of(environ, body, int(status_line.split()[0]), out_headers,
                                 b"".join(out))
            except Exception as e:  # a record slip must never break the AWS answer
                new = [{"access_key_id": None, "action": None, "resource": "*", "context": {},
                        "status": answer[0] if answer else None, "error": None,
                        "record_error": repr(e)}]
            for rec in new:
                rec["seq"] = len(records)
                records.append(rec)
                if record_file is not None:
                    record_file.write(json.dumps(rec) + "\n")
            if record_file is not None:
                record_file.flush()
        return out


def external_event_sources():
    """moto runs a queue's event source mappings itself, inside SendMessage: it receives the new
    messages with the queue's visibility timeout, invokes the function in its own Lambda backend
    (which cannot run a provided.al2023 binary here), and on failure makes them visible again at
    once, so that a burst of sends counts five receives on the first messages within a
    millisecond and its redrive moves them to the DLQ unprocessed. scripts/aws_e2e plays Lambda's
    poller itself, so each queue's mapping list, which only that code reads, stays empty:
    ListEventSourceMappings answers from the Lambda backend and is unchanged."""
    from moto.sqs import models as sqs_models

    def never(_queue):
        return {}

    sqs_models.Queue.lambda_event_source_mappings = property(never, lambda _queue, _value: None)


def main():
    global record_file
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--until-stdin-closes", action="store_true")
    parser.add_argument("--record", metavar="PATH", help="also append each record to PATH (JSON lines)")
    parser.add_argument("--external-event-sources", action="store_true",
                        help="moto's own SQS event source mappings never run (a poller outside plays them)")
    args = parser.parse_args()
    if args.external_event_sources:
        external_event_sources()
    if args.record:
        record_file = open(args.record, "a", encoding="utf-8")
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    print(server.server_address[1], flush=True)
    if args.until_stdin_closes:
        threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
