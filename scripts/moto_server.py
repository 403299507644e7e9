"""A moto server (AWS stand-in) on 127.0.0.1, on a port the OS picks, serving one request at a
time: moto checks a DynamoDB condition expression and then writes in two steps, so its usual
threaded server lets two concurrent conditional writes both pass, which DynamoDB never does.

Every AWS API call is counted by its IAM action (`dynamodb:PutItem`, `kms:Decrypt`, ...):
`GET /_herald/calls` returns the counts as JSON, `DELETE /_herald/calls` resets them. The
template's least-privilege test (infra/tests) and the cost model (scripts/bench.sh) read them.

Prints the port on the first line of stdout. With --until-stdin-closes it exits when its stdin
closes (tests that spawn it); otherwise it serves until killed (scripts/test.sh).
"""
import collections
import json
import os
import sys
import threading

from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

inner = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()
calls = collections.Counter()

# X-Amz-Target prefixes of the JSON protocols, by IAM service prefix.
TARGETS = {
    "DynamoDB_20120810": "dynamodb",
    "TrentService": "kms",
    "secretsmanager": "secretsmanager",
    "AmazonSQS": "sqs",
}


def action_of(environ):
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if "." in target:
        prefix, name = target.split(".", 1)
        return f"{TARGETS.get(prefix, prefix)}:{name}"
    return None


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/_herald/calls":
        with lock:
            if environ.get("REQUEST_METHOD") == "DELETE":
                calls.clear()
            body = json.dumps(dict(sorted(calls.items()))).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    with lock:
        action = action_of(environ)
        if action:
            calls[action] += 1
        return list(inner(environ, start_response))


server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
print(server.server_address[1], flush=True)
if "--until-stdin-closes" in sys.argv:
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
server.serve_forever()
