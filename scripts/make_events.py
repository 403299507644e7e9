"""Writes the AWS-shaped event fixtures in events/<function>/ (run from the repository root with
.venv/bin/python; the twilio package signs the webhook requests). Deterministic: run it again
and nothing changes. The tests (infra/tests/deploy.rs) load every file it writes.

Webhook requests are signed as Twilio would sign them for
  auth token  test-auth-token                       (herald::test_env: TestEnv's credentials)
  base URL    https://hooks.example.test/prod       (herald::test_env::WEBHOOK_BASE)
"""

import json
import pathlib
import urllib.parse

from twilio.request_validator import RequestValidator

ROOT = pathlib.Path(__file__).resolve().parent.parent / "events"
TOKEN = "test-auth-token"
BASE = "https://hooks.example.test/prod"
ACCOUNT = "AC" + "a1" * 16
MSG = "msg_01jd5m8x2v9q4r7t3w6y0z1a2b"
CALL = "call_01jd5m8x2v9q4r7t3w6y0z1a2c"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:herald/prod/twilio-AbCdEf"
TIME_EPOCH = 1800000000000


def api_event(method, path, body=None, query="", headers=None, jwt_sub="svc-billing", request_id="req-0001"):
    h = {"host": "api.example.test", "user-agent": "fixture"}
    if body is not None:
        h["content-type"] = "application/json"
    h.update(headers or {})
    qs = dict(urllib.parse.parse_qsl(query)) or None
    ctx = {
        "accountId": "123456789012",
        "apiId": "abc123",
        "domainName": h["host"],
        "domainPrefix": "api",
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.10", "userAgent": "fixture"},
        "requestId": request_id,
        "routeKey": f"{method} {path}",
        "stage": "$default",
        "time": "15/Jan/2027:08:00:00 +0000",
        "timeEpoch": TIME_EPOCH,
    }
    if jwt_sub:
        ctx["authorizer"] = {"jwt": {"claims": {"sub": jwt_sub, "iss": "https://issuer.example.test/"}, "scopes": None}}
    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": h,
        "queryStringParameters": qs,
        "requestContext": ctx,
        "body": None if body is None else (body if isinstance(body, str) else json.dumps(body)),
        "isBase64Encoded": False,
    }


def webhook(route, query, params, tamper=False, request_id="req-hook"):
    url = f"{BASE}{route}" + (f"?{query}" if query else "")
    sig = RequestValidator(TOKEN).compute_signature(url, params)
    if tamper:
        sig = sig[:-4] + ("AAAA" if not sig.endswith("AAAA") else "BBBB")
    body = urllib.parse.urlencode(params)
    headers = {
        "host": "hooks.example.test",
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": sig,
        "i-twilio-idempotency-token": "idem-" + request_id,
    }
    e = api_event("POST", route, body=body, query=query, headers=headers, jwt_sub=None, request_id=request_id)
    e["routeKey"] = e["requestContext"]["routeKey"] = f"POST {route}"
    return e


def sqs_event(queue, bodies):
    return {
        "Records": [
            {
                "messageId": f"{queue}-{i:04d}",
                "receiptHandle": f"receipt-{queue}-{i:04d}",
                "body": b,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(TIME_EPOCH), "SenderId": "AROAEXAMPLE", "ApproximateFirstReceiveTimestamp": str(TIME_EPOCH)},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:herald-prod-{queue}",
                "awsRegion": "us-east-1",
            }
            for i, b in enumerate(bodies)
        ]
    }


def write(function, name, event):
    d = ROOT / function
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.json").write_text(json.dumps(event, indent=2) + "\n")


write("send-sms", "post-message", api_event("POST", "/v1/messages", {"to": "+14155552671", "body": "Disk almost full on db-1"}))
write("send-sms", "post-message-template", api_event("POST", "/v1/messages", {"to": "+14155552671", "template": "alert", "variables": {"service": "db", "summary": "disk 95%"}}))
write("send-sms", "post-message-invalid", api_event("POST", "/v1/messages", {"to": "4155552671", "body": "no country code"}))
write("send-sms", "post-batch", api_event("POST", "/v1/messages/batch", {"messages": [{"to": "+14155552671", "body": "first"}, {"to": "+14155550143", "body": "second"}, {"to": "nope", "body": "third"}]}))
write("send-sms", "get-message", api_event("GET", f"/v1/messages/{MSG}"))
write("send-sms", "get-health", api_event("GET", "/health", jwt_sub=None))
write("send-sms", "get-health-details", api_event("GET", "/v1/health"))
write("send-sms", "sqs-send-queue", sqs_event("send", [json.dumps({"kind": "message", "id": MSG, "attempt": 1}), "not a job"]))

write("place-call", "post-call", api_event("POST", "/v1/calls", {"to": "+14155552671", "template": "emergency_alert", "variables": {"service": "db", "summary": "disk 95%"}, "voice": "Polly.Joanna", "language": "en-US", "loop": 2, "require_ack": True}))
write("place-call", "post-call-invalid", api_event("POST", "/v1/calls", {"to": "+14155552671", "template": "emergency_alert", "variables": {"service": "db", "summary": "x"}, "voice": "Robot.Bender"}))
write("place-call", "get-call", api_event("GET", f"/v1/calls/{CALL}"))

write("webhook-receiver", "message-status", webhook("/webhooks/twilio/message-status", f"mid={MSG}&a=1",
      {"MessageSid": "SM" + "0f" * 16, "MessageStatus": "delivered", "AccountSid": ACCOUNT, "To": "+14155552671", "From": "+15005550006", "ApiVersion": "2010-04-01"}, request_id="req-hook-1"))
write("webhook-receiver", "message-status-forged", webhook("/webhooks/twilio/message-status", f"mid={MSG}&a=1",
      {"MessageSid": "SM" + "0f" * 16, "MessageStatus": "delivered", "AccountSid": ACCOUNT, "To": "+14155552671", "From": "+15005550006", "ApiVersion": "2010-04-01"}, tamper=True, request_id="req-hook-2"))
write("webhook-receiver", "call-status", webhook("/webhooks/twilio/call-status", f"cid={CALL}&a=1",
      {"CallSid": "CA" + "0e" * 16, "CallStatus": "completed", "CallDuration": "12", "AccountSid": ACCOUNT, "To": "+14155552671", "From": "+15005550006", "ApiVersion": "2010-04-01"}, request_id="req-hook-3"))
write("webhook-receiver", "voice-gather", webhook("/webhooks/twilio/voice-gather", f"cid={CALL}&a=1",
      {"CallSid": "CA" + "0e" * 16, "Digits": "1", "AccountSid": ACCOUNT, "To": "+14155552671", "From": "+15005550006", "ApiVersion": "2010-04-01"}, request_id="req-hook-4"))
write("webhook-receiver", "inbound-sms-stop", webhook("/webhooks/twilio/inbound-sms", "",
      {"MessageSid": "SM" + "0d" * 16, "AccountSid": ACCOUNT, "From": "+14155552671", "To": "+15005550006", "Body": "STOP", "NumMedia": "0", "ApiVersion": "2010-04-01"}, request_id="req-hook-5"))

write("retry-processor", "sqs-retry-queue", sqs_event("retry", [json.dumps({"kind": "message", "id": MSG, "attempt": 2}), json.dumps({"kind": "call", "id": CALL, "attempt": 2}), "{\"kind\":\"mystery\"}"]))
write("retry-processor", "scheduled-sweep", {
    "version": "0", "id": "7e9b6c1a-0000-4000-8000-000000000001", "detail-type": "Scheduled Event", "source": "aws.scheduler",
    "account": "123456789012", "time": "2027-01-15T08:00:00Z", "region": "us-east-1",
    "resources": ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/herald-prod-sweep"], "detail": {}})

for i, step in enumerate(["createSecret", "setSecret", "testSecret", "finishSecret"]):
    write("credential-rotation", step, {"Step": step, "SecretId": SECRET_ARN, "ClientRequestToken": "3f0e2d5c-8a4b-4c1d-9e7f-6a5b4c3d2e1f"})
print("events written under", ROOT)
