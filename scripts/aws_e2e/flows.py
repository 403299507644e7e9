"""The flows scripts/aws-e2e.sh asserts against the emulated stack: each one drives Herald only
through what a real client has (the HTTP API behind the gateway, a JWT, the Twilio simulator
playing the handset, the queues and the schedule), and checks the final state through the API.

A flow is a function `flow(ctx)` that raises `FlowFailed` (or AssertionError) with a sentence
that names what went wrong. No phone number, body or code is ever printed: numbers are shown
masked.
"""

import json
import re
import threading
import time
import urllib.error
import urllib.request

SENDER = "+15005550006"


class FlowFailed(Exception):
    """A flow did not end as it must."""


def masked(number):
    """+1415•••2671: enough to tell numbers apart in a report, not enough to dial."""
    return number[:5] + "\u2022\u2022\u2022" + number[-4:] if len(number) > 9 else "\u2022\u2022\u2022"


def numbers(start, count):
    """`count` distinct valid US numbers (415-555-xxxx, fictional), from `start`."""
    return [f"+1415555{start + i:04d}" for i in range(count)]


class Http:
    """A client of one base URL; answers are (status, headers, parsed JSON or text)."""

    def __init__(self, base):
        self.base = base.rstrip("/")

    def call(self, method, path, body=None, headers=None, raw=None, timeout=60):
        data = raw
        hdrs = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, Headers(resp.headers), _parse(resp.read(), resp.headers)
        except urllib.error.HTTPError as e:
            return e.code, Headers(e.headers), _parse(e.read(), e.headers)


class Headers(dict):
    """Response headers by lower-cased name (`get` takes any case)."""

    def __init__(self, headers):
        super().__init__((k.lower(), v) for k, v in headers.items())

    def get(self, name, default=None):
        return super().get(name.lower(), default)


def _parse(data, headers):
    ctype = headers.get("Content-Type", "") or ""
    if "json" in ctype:
        try:
            return json.loads(data or b"null")
        except ValueError:
            pass
    return data.decode(errors="replace")


def wait_until(what, check, deadline_secs=60.0, every=0.5, last_seen=None):
    """Polls `check()` (an external system's state) until it returns a truthy value, or fails
    naming `what` when the deadline passes. Returns that value."""
    end = time.monotonic() + deadline_secs
    last = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > end:
            raise FlowFailed(f"timed out waiting for {what}" + (f" (last seen: {last_seen()})"
                                                                if last_seen else ""))
        time.sleep(every)  # polling another process's state, with a deadline


class Context:
    """What the flows use: the API (as a caller with a valid JWT), the simulator, the
    harness (queues, schedule, rotation, logs) and the stack description."""

    def __init__(self, harness, stack, sim_url, advance_queue_clock):
        self.harness = harness
        self.stack = stack
        self.api = Http(harness.gateway_url)
        self.sim = Http(sim_url)
        self.advance_queue_clock = advance_queue_clock
        self.noted = {}  # what later checks use: {"retried_message": id}
        self.as_caller("e2e-backend")
        self.base_url = stack["http_api"]["base_url"]

    def as_caller(self, sub):
        """Calls from now on come from the backend `sub` (its own rate limits and messages)."""
        self.token = self.harness.token(sub)

    def statuses(self):
        """This caller's messages by id → status (GET /v1/messages, every page)."""
        found, cursor = {}, None
        while True:
            q = "/v1/messages?limit=100" + (f"&cursor={cursor}" if cursor else "")
            s, _, d = self.api.call("GET", q, headers=self.auth())
            if s != 200:
                raise FlowFailed(f"GET /v1/messages answered {s}")
            found.update((m["id"], m["status"]) for m in d["messages"])
            cursor = d.get("next_cursor")
            if not cursor:
                return found

    def wait_delivered(self, ids, what, deadline_secs):
        """Waits until every one of `ids` is final, reading the caller's list a page at a time
        (a caller polling each message would spend its read limit); all must be delivered."""
        want = set(ids)
        seen = {}

        def final():
            seen.clear()
            seen.update(self.statuses())
            return all(seen.get(i) in ("delivered", "undelivered", "failed") for i in want)
        try:
            wait_until(what, final, deadline_secs, every=1.0,
                       last_seen=lambda: {st: sum(1 for i in want if seen.get(i) == st)
                                          for st in set(seen.get(i, "unlisted") for i in want)})
        finally:
            counts = {}
            for i in want:
                counts[seen.get(i, "unlisted")] = counts.get(seen.get(i, "unlisted"), 0) + 1
            self.last_counts = counts
        if counts.get("delivered") != len(want):
            raise FlowFailed(f"{what}: ended {counts}")

    def auth(self, extra=None):
        h = {"Authorization": f"Bearer {self.token}"}
        h.update(extra or {})
        return h

    def send(self, to, body, **extra):
        return self.api.call("POST", "/v1/messages", {"to": to, "body": body, **extra},
                             headers=self.auth())

    def send_while_twilio_fails(self, to, body):
        """Sends while Twilio answers 500 (then back to health): 202, the message `retrying`
        with its job on the retry queue. Returns its id."""
        self.outcome(to, "deliver")
        self.faults(rate_500=1.0)
        try:
            status, _, doc = self.send(to, body)
        finally:
            self.faults()
        expect_status("POST /v1/messages while Twilio answers 500", status, 202)
        return doc["id"]

    def message(self, mid):
        status, _, doc = self.api.call("GET", f"/v1/messages/{mid}", headers=self.auth())
        if status != 200:
            raise FlowFailed(f"GET /v1/messages/{{id}} answered {status}")
        return doc

    def wait_message(self, mid, final, deadline_secs=60.0):
        def reached():
            doc = self.message(mid)
            return doc if doc.get("status") in final else None
        return wait_until(f"message {mid} to reach {sorted(final)}", reached, deadline_secs)

    def outcome(self, to, outcome, code=None):
        body = {"to": to, "outcome": outcome}
        if code is not None:
            body["error_code"] = code
        status, _, _ = self.sim.call("POST", "/_sim/outcomes", body)
        assert status == 200, f"simulator refused an outcome: {status}"

    def faults(self, **faults):
        status, _, _ = self.sim.call("POST", "/_sim/faults", {
            "rate_429": 0.0, "retry_after_secs": 1, "rate_500": 0.0, "rate_timeout": 0.0,
            "timeout_ms": 30000, "timeout_after_accept": False, "rate_duplicate_callback": 0.0,
            "rate_out_of_order": 0.0, **faults})
        assert status == 200, f"simulator refused faults: {status}"


def expect_status(what, got, *allowed):
    if got not in allowed:
        raise FlowFailed(f"{what}: answered {got}, expected {' or '.join(map(str, allowed))}")


def expect_problem(what, status, headers, doc, want_status, want_type):
    ctype = headers.get("Content-Type", "")
    if status != want_status or "application/problem+json" not in ctype:
        raise FlowFailed(f"{what}: answered {status} {ctype}, expected {want_status} problem+json")
    if not isinstance(doc, dict) or not str(doc.get("type", "")).endswith(want_type):
        raise FlowFailed(f"{what}: problem type {doc.get('type') if isinstance(doc, dict) else doc!r}, "
                         f"expected …{want_type}")


# ---------------------------------------------------------------------------------------------
# The flows
# ---------------------------------------------------------------------------------------------

def one_message_delivered(ctx):
    """POST /v1/messages → Twilio → signed callbacks through the gateway → delivered."""
    to = numbers(2000, 1)[0]
    ctx.outcome(to, "deliver")
    status, _, doc = ctx.send(to, "Disk usage on db-1 above 90%.")
    expect_status("POST /v1/messages", status, 201)
    final = ctx.wait_message(doc["id"], {"delivered", "undelivered", "failed"})
    if final["status"] != "delivered":
        raise FlowFailed(f"message ended {final['status']}, expected delivered")
    return f"{doc['id']} delivered to {masked(to)}"


def batch_of_100(ctx):
    """POST /v1/messages/batch with 100 items → the send queue → send-sms (its SQS trigger:
    batch size, partial failures, maximum concurrency) → every one delivered."""
    tos = numbers(2100, 100)
    for to in tos:
        ctx.outcome(to, "deliver")
    items = [{"to": to, "body": f"Batch notice {i}."} for i, to in enumerate(tos)]
    status, _, doc = ctx.api.call("POST", "/v1/messages/batch", {"messages": items},
                                  headers=ctx.auth())
    expect_status("POST /v1/messages/batch", status, 202)
    ids = [m["id"] for m in doc.get("messages", doc.get("accepted", []))]
    if len(ids) != 100:
        raise FlowFailed(f"batch accepted {len(ids)} of 100: {json.dumps(doc)[:300]}")
    try:
        ctx.wait_delivered(ids, "the batch's 100 messages to be delivered", 150)
    except FlowFailed as e:
        esm = next(e for e in ctx.stack["event_source_mappings"] if e["function"] == "send-sms")
        attrs = ctx.harness.sqs().get_queue_attributes(
            QueueUrl=esm["queue_url"], AttributeNames=["All"])["Attributes"]
        stuck = [i for i, m in enumerate(ids) if ctx.message(m)["status"] != "delivered"]
        _, _, at_twilio = ctx.sim.call("GET", "/_sim/messages")
        reached = sum(1 for m in at_twilio if m.get("to") in set(tos))
        dlq = ctx.harness.sqs().get_queue_attributes(
            QueueUrl=esm["queue"]["redrive"]["dead_letter_url"],
            AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        attrs["twilio_creates"] = reached
        attrs["dlq"] = dlq["ApproximateNumberOfMessages"]
        raise FlowFailed(f"{e}; send queue {({k: v for k, v in attrs.items() if 'Approx' in k or k in ('dlq', 'twilio_creates')})}"
                         f"; not delivered: items {stuck[:3]}…{stuck[-3:]}") from None
    return "100 of 100 delivered through the send queue"


def voice_alert_acknowledged(ctx):
    """POST /v1/calls with require_ack → Twilio places it → the callee presses 1 at the
    <Gather> → voice-gather webhook → acknowledged."""
    to = numbers(2300, 1)[0]
    status, _, _ = ctx.sim.call("POST", "/_sim/call-outcomes",
                                {"to": to, "outcome": "answer-and-press", "digits": "1"})
    assert status == 200
    status, _, doc = ctx.api.call("POST", "/v1/calls", {
        "to": to, "message": "Database primary is down.", "require_ack": True},
        headers=ctx.auth())
    expect_status("POST /v1/calls", status, 201)
    cid = doc["id"]

    def acked():
        s, _, d = ctx.api.call("GET", f"/v1/calls/{cid}", headers=ctx.auth())
        return d if s == 200 and d["status"] == "completed" else None
    d = wait_until(f"call {cid} to complete", acked, deadline_secs=60)
    if not d["acknowledgement"]["acknowledged"]:
        raise FlowFailed(f"call {cid} completed without its acknowledgement")
    return f"{cid} completed and acknowledged (key 1 pressed)"


def retried_after_twilio_refused(ctx):
    """Twilio answers 500 → 202 retrying, a job on the retry queue → retry-processor (its SQS
    trigger) sends again once Twilio is back → delivered in 2 attempts."""
    mid = ctx.send_while_twilio_fails(numbers(2400, 1)[0],
                                      "Certificate for api.example.com expires in 7 days.")
    ctx.noted["retried_message"] = mid  # its lines are in three functions' logs
    # The retry job waits on the queue for its backoff: move the queues' clock past it.
    ctx.advance_queue_clock(3600)
    final = ctx.wait_message(mid, {"delivered", "undelivered", "failed"}, deadline_secs=90)
    if final["status"] != "delivered":
        raise FlowFailed(f"retried message ended {final['status']}")
    attempts = final.get("attempts", final.get("attempt"))
    if attempts is not None and int(attempts) < 2:
        raise FlowFailed(f"delivered in {attempts} attempt(s), expected a retry")
    return f"{mid} delivered on attempt {attempts}"


def unreadable_job_to_dlq(ctx):
    """A job send-sms cannot read is reported failed on every receive and reaches the send
    DLQ through the queue's redrive policy (maxReceiveCount), never dropped."""
    esm = next(e for e in ctx.stack["event_source_mappings"] if e["function"] == "send-sms")
    redrive = esm["queue"]["redrive"]
    if not redrive:
        raise FlowFailed("the send queue has no redrive policy")
    sqs = ctx.harness.sqs()
    sqs.send_message(QueueUrl=esm["queue_url"], MessageBody="this is not a job")
    visibility = esm["queue"]["visibility_timeout"]
    dlq = redrive["dead_letter_url"]

    def in_dlq():
        ctx.advance_queue_clock(visibility + 1)
        got = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                  WaitTimeSeconds=0).get("Messages", [])
        return [m for m in got if m["Body"] == "this is not a job"]
    found = wait_until("the unreadable job to reach the send DLQ", in_dlq, deadline_secs=90,
                       every=0.5)
    sqs.delete_message(QueueUrl=dlq, ReceiptHandle=found[0]["ReceiptHandle"])
    return f"in the DLQ after {redrive['max_receive_count']} receives"


def stop_then_refused(ctx):
    """An inbound STOP through the gateway → opted out → a send to that number is refused with
    recipient-opted-out (422 problem+json) and nothing reaches Twilio."""
    to = numbers(2500, 1)[0]
    status, _, _ = ctx.sim.call("POST", "/_sim/inbound", {
        "from": to, "to": SENDER, "body": "STOP",
        "url": ctx.base_url + "/webhooks/twilio/inbound-sms"})
    expect_status("simulated inbound STOP", status, 200)

    def refused():
        s, h, d = ctx.send(to, "Maintenance tonight at 22:00.")
        return (s, h, d) if s == 422 else None
    s, h, d = wait_until("a send to the opted-out number to be refused", refused, 30, every=0.5)
    expect_problem("send after STOP", s, h, d, 422, "recipient-opted-out")
    return "STOP recorded; the next send answered 422 recipient-opted-out"


def one_time_code(ctx):
    """POST /v1/verifications → the code arrives by SMS (read from the simulator, as the
    handset would) → POST …/check with it → approved; a wrong code first is refused."""
    to = numbers(2600, 1)[0]
    status, _, doc = ctx.api.call("POST", "/v1/verifications", {"to": to}, headers=ctx.auth())
    expect_status("POST /v1/verifications", status, 201)
    vid = doc["id"]

    def code():
        s, _, msgs = ctx.sim.call("GET", "/_sim/messages")
        for m in msgs if s == 200 else []:
            if m.get("to") == to:
                found = re.search(r"\b(\d{4,10})\b", m.get("body", ""))
                if found:
                    return found.group(1)
        return None
    real = wait_until("the one-time code to reach the handset", code, 30)
    wrong = "0" * len(real) if real != "0" * len(real) else "1" * len(real)
    s, _, d = ctx.api.call("POST", f"/v1/verifications/{vid}/check", {"code": wrong},
                           headers=ctx.auth())
    if s == 200 and d.get("status") == "approved":
        raise FlowFailed("a wrong code was approved")
    s, _, d = ctx.api.call("POST", f"/v1/verifications/{vid}/check", {"code": real},
                           headers=ctx.auth())
    expect_status("POST /v1/verifications/{id}/check", s, 200)
    if d.get("status") != "approved":
        raise FlowFailed(f"the right code gave {d.get('status')}")
    return f"{vid} approved (a wrong code first was refused)"


def list_and_report(ctx):
    """GET /v1/messages (the by_caller index) and GET /v1/reports/delivery, for a caller who
    sent three messages."""
    tos = numbers(2800, 3)
    ids = []
    for to in tos:
        ctx.outcome(to, "deliver")
        status, _, doc = ctx.send(to, "Weekly report is ready.")
        expect_status("POST /v1/messages", status, 201)
        ids.append(doc["id"])
    ctx.wait_delivered(ids, "the three messages to be delivered", 60)
    s, _, d = ctx.api.call("GET", "/v1/messages?limit=50", headers=ctx.auth())
    expect_status("GET /v1/messages", s, 200)
    items = d["messages"]
    if sorted(m["id"] for m in items) != sorted(ids):
        raise FlowFailed(f"GET /v1/messages listed {len(items)} messages, expected the caller's 3")
    if any(to in json.dumps(d) for to in tos):
        raise FlowFailed("GET /v1/messages shows a number unmasked")
    s, _, r = ctx.api.call("GET", "/v1/reports/delivery", headers=ctx.auth())
    expect_status("GET /v1/reports/delivery", s, 200)
    if r.get("total") != 3 or r.get("by_status", {}).get("delivered") != 3:
        raise FlowFailed(f"the delivery report says {json.dumps(r)[:200]}, expected 3 delivered")
    return f"3 listed, masked; report: 3 of 3 delivered"


def health(ctx):
    """GET /health through the gateway (no JWT on that route): `ok` and nothing more; the
    details are GET /v1/health's, behind the JWT authorizer like every /v1 route."""
    s, _, d = ctx.api.call("GET", "/health")
    expect_status("GET /health", s, 200)
    if d != {"status": "ok"}:
        raise FlowFailed(f"/health says {json.dumps(d)[:200]}, expected only status ok")
    s, _, _ = ctx.api.call("GET", "/v1/health")
    expect_status("GET /v1/health without a token", s, 401)
    s, _, d = ctx.api.call("GET", "/v1/health", headers=ctx.auth())
    expect_status("GET /v1/health", s, 200)
    account = d.get("twilio", {}).get("result", {}).get("account_status")
    if d.get("status") != "ok" or account != "active":
        raise FlowFailed(f"/v1/health says {json.dumps(d)[:200]}")
    for q in ("send", "retry"):
        if not isinstance(d.get("queues", {}).get(q, {}).get("dead_letters"), int):
            raise FlowFailed(f"/v1/health shows no dead-letter depth of the {q} queue")
    return "ok; details behind the token"


def unauthenticated_refused(ctx):
    """The gateway's JWT authorizer: no token, a token of another issuer, audience or an
    expired one are 401 from the gateway, and the function is never invoked."""
    h = ctx.harness
    for label, headers in [
        ("no token", {}),
        ("wrong issuer", {"Authorization": "Bearer " + h.token("x", iss="https://evil.test/")}),
        ("wrong audience", {"Authorization": "Bearer " + h.token("x", aud="other")}),
        ("expired", {"Authorization": "Bearer " + h.token("x", exp=int(time.time()) - 3600)}),
        ("not a JWT", {"Authorization": "Bearer not-a-jwt"}),
    ]:
        s, _, _ = ctx.api.call("POST", "/v1/messages", {"to": "+14155552000", "body": "x"},
                               headers=headers)
        if s != 401:
            raise FlowFailed(f"{label}: answered {s}, expected 401 from the gateway")
    return "5 of 5 refused with 401"


def sweep(ctx):
    """A message whose job was lost (the process died between the store and the queue) is
    found by the sweep the schedule fires with EventBridge Scheduler's event, enqueued again
    under retry-processor's role, and delivered.

    Twilio answers 500, so the message waits `retrying` with its job on the retry queue; the
    job is then purged (the loss), and the record is aged past the sweep's grace by moving its
    timestamps back ten minutes with the administrator's credentials (the functions run on the
    real clock, which the harness cannot move)."""
    schedules = ctx.stack["schedules"]
    if not schedules:
        raise FlowFailed("the stack has no sweep schedule")
    mid = ctx.send_while_twilio_fails(numbers(2700, 1)[0], "Backup job failed on db-2.")
    env = ctx.stack["functions"]["retry-processor"]["environment"]
    ctx.harness.sqs().purge_queue(QueueUrl=env["RETRY_QUEUE_URL"])
    age_record(ctx.harness.admin_client("dynamodb"), env["MESSAGES_TABLE"], mid, 600_000)
    ctx.advance_queue_clock(3600)  # had the job survived, its backoff would be over
    if ctx.message(mid)["status"] != "retrying":
        raise FlowFailed("the message moved before the sweep: its job was not lost")
    kind, body = ctx.harness.fire_schedule(schedules[0])
    if kind != "response":
        raise FlowFailed(f"the sweep answered {kind}: {str(body)[:200]}")
    final = ctx.wait_message(mid, {"delivered", "undelivered", "failed"}, deadline_secs=60)
    if final["status"] != "delivered":
        raise FlowFailed(f"the swept message ended {final['status']}")
    return f"{mid}, its job lost, swept ({body}) and delivered on attempt {final.get('attempts')}"


def age_record(dynamodb, table, mid, by_ms):
    """Moves a message record's timestamps `by_ms` into the past, as if that much time had
    passed since it was last written (conditional on its version, so no write is lost)."""
    item = dynamodb.get_item(TableName=table, Key={"id": {"S": mid}}, ConsistentRead=True)["Item"]
    doc = json.loads(item["doc"]["S"])
    for field in ("created_at_ms", "updated_at_ms", "claimed_at_ms", "claimed_until_ms",
                  "next_attempt_at_ms"):
        if doc.get(field) is not None:
            doc[field] -= by_ms
    dynamodb.update_item(
        TableName=table, Key={"id": {"S": mid}},
        UpdateExpression="SET #doc = :doc, #created = :created",
        ConditionExpression="#version = :version",
        ExpressionAttributeNames={"#doc": "doc", "#created": "created_at_ms",
                                  "#version": "version"},
        ExpressionAttributeValues={":doc": {"S": json.dumps(doc)},
                                   ":created": {"N": str(doc["created_at_ms"])},
                                   ":version": item["version"]})


def rotations_under_load(ctx):
    """An API-key rotation, then an auth-token rotation, each driven as Secrets Manager does,
    while a stream of sends (and their callbacks) goes on: no send fails, no genuine callback
    is refused."""
    stop = threading.Event()
    sent, failures = [], []
    tos = iter(numbers(3000, 1000))

    def stream():
        while not stop.is_set():
            to = next(tos)
            s, _, d = ctx.send(to, "Heartbeat from the rotation drill.")
            if s != 201:
                failures.append(s)
            else:
                sent.append(d["id"])
            time.sleep(0.2)  # pacing the stream (a load, not a synchronisation)
    rejected_before = ctx.harness.count_log("WebhookRejected", "webhook-receiver")
    t = threading.Thread(target=stream, daemon=True)
    t.start()
    try:
        first = ctx.harness.rotate(mode="api-key")
        second = ctx.harness.rotate(mode="auth-token")
        wait_until("a few sends after the rotations", lambda: len(sent) >= 10, 60)
    finally:
        stop.set()
        t.join(timeout=30)
    if failures:
        raise FlowFailed(f"{len(failures)} sends failed during rotation: {failures[:5]}")
    ctx.wait_delivered(sent, "the stream's messages to be delivered", 120)
    rejected = ctx.harness.count_log("WebhookRejected", "webhook-receiver") - rejected_before
    if rejected:
        raise FlowFailed(f"{rejected} genuine callbacks were refused during rotation")
    return f"{len(sent)} sent, all delivered; rotations {first} then {second}"


def undelivered_retried_by_the_callback(ctx):
    """Twilio reports undelivered (30003, unreachable handset) in a signed callback →
    webhook-receiver schedules the next attempt on the retry queue → retry-processor tries
    again → after the attempts allowed, the message ends undelivered with its code."""
    to = numbers(2450, 1)[0]
    ctx.outcome(to, "undelivered", 30003)
    status, _, doc = ctx.send(to, "Your appointment is tomorrow at 9:00.")
    expect_status("POST /v1/messages", status, 201)
    mid = doc["id"]

    def final():
        ctx.advance_queue_clock(3600)  # each retry's backoff passes at once
        d = ctx.message(mid)
        return d if d["status"] in ("delivered", "undelivered", "failed") and not d.get(
            "next_attempt_at") else None
    d = wait_until(f"message {mid} to end", final, deadline_secs=120, every=1.0)
    if d["status"] != "undelivered" or d.get("error_code") != 30003 or d["attempts"] < 2:
        raise FlowFailed(f"ended {d['status']} code {d.get('error_code')} after "
                         f"{d['attempts']} attempts, expected undelivered 30003 after retries")
    return f"{mid} undelivered (30003) after {d['attempts']} attempts"


def call_retried_after_twilio_refused(ctx):
    """Twilio answers 500 to a call → 202, place-call puts a job on the retry queue →
    retry-processor places the call once Twilio is back → completed."""
    to = numbers(2350, 1)[0]
    status, _, _ = ctx.sim.call("POST", "/_sim/call-outcomes",
                                {"to": to, "outcome": "answer-no-input"})
    assert status == 200
    ctx.faults(rate_500=1.0)
    try:
        status, _, doc = ctx.api.call("POST", "/v1/calls", {
            "to": to, "message": "Disk array degraded."}, headers=ctx.auth())
    finally:
        ctx.faults()
    expect_status("POST /v1/calls while Twilio answers 500", status, 202)
    cid = doc["id"]
    ctx.advance_queue_clock(3600)

    def done():
        s, _, d = ctx.api.call("GET", f"/v1/calls/{cid}", headers=ctx.auth())
        return d if s == 200 and d["status"] == "completed" else None
    d = wait_until(f"call {cid} to complete after its retry", done, deadline_secs=60)
    if d["attempts"] < 2:
        raise FlowFailed(f"call completed in {d['attempts']} attempt(s), expected a retry")
    return f"{cid} completed on attempt {d['attempts']}"


FLOWS = [
    health,
    unauthenticated_refused,
    one_message_delivered,
    batch_of_100,
    voice_alert_acknowledged,
    retried_after_twilio_refused,
    undelivered_retried_by_the_callback,
    call_retried_after_twilio_refused,
    unreadable_job_to_dlq,
    stop_then_refused,
    one_time_code,
    list_and_report,
    sweep,
    rotations_under_load,
]
