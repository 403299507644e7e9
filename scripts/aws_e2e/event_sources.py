"""Lambda's SQS poller for each of the stack's event source mappings, against the AWS emulator.

Per mapping: ReceiveMessage (up to batch_size, AttributeNames All, MessageAttributeNames All),
invoke the function with the SQS event Lambda builds, then delete what succeeded:
- without ReportBatchItemFailures: every message when the invocation succeeded, none when it
  failed;
- with it: every message not named in `batchItemFailures`; none when the invocation failed or
  the answer is malformed per AWS's rules (not a JSON object, or an itemIdentifier that is
  empty, null, under another key, or not a message of the batch); an empty or null answer or
  list is complete success.
At most `maximum_concurrency` batches are in flight (Lambda's scaling cap), else the function's
pool size. A failed message stays on the queue until its visibility timeout ends, and the
queue's RedrivePolicy (played by the emulator) moves it to the DLQ after maxReceiveCount.

Receives are short (WaitTimeSeconds=0): the emulator serves one request at a time, so a long
poll would stall every other caller; an empty receive waits `idle_poll_secs` before the next.
"""

import base64
import concurrent.futures
import json
import sys
import threading
import time


def sqs_record(msg, queue_arn, region):
    """One record of Lambda's SQS event, from a ReceiveMessage message."""
    attrs = msg.get("Attributes") or {}
    mattrs = {}
    for name, a in (msg.get("MessageAttributes") or {}).items():
        v = {"stringListValues": [], "binaryListValues": [], "dataType": a.get("DataType")}
        if "StringValue" in a:
            v["stringValue"] = a["StringValue"]
        if "BinaryValue" in a:
            b = a["BinaryValue"]
            v["binaryValue"] = base64.b64encode(b).decode() if isinstance(b, bytes) else b
        mattrs[name] = v
    rec = {
        "messageId": msg["MessageId"],
        "receiptHandle": msg["ReceiptHandle"],
        "body": msg.get("Body", ""),
        "attributes": {k: str(v) for k, v in attrs.items()},
        "messageAttributes": mattrs,
        "md5OfBody": msg.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if msg.get("MD5OfMessageAttributes"):
        rec["md5OfMessageAttributes"] = msg["MD5OfMessageAttributes"]
    return rec


def failed_ids(kind, answer, batch_ids, report_failures):
    """The message ids of a batch to leave on the queue (None: all of them)."""
    if kind != "response":
        return None
    if not report_failures:
        return set()
    if answer is None or answer == {} or answer == "":
        return set()
    if not isinstance(answer, dict):
        return None
    items = answer.get("batchItemFailures")
    if items is None:
        return set()
    if not isinstance(items, list):
        return None
    out = set()
    for it in items:
        if not isinstance(it, dict):
            return None
        ident = it.get("itemIdentifier")
        if not isinstance(ident, str) or not ident or ident not in batch_ids:
            return None
        out.add(ident)
    return out


class SqsPoller:
    def __init__(self, esm, sqs_client, invoke, region, default_concurrency=2,
                 idle_poll_secs=0.2):
        self.esm = esm
        self.sqs = sqs_client
        self.invoke = invoke  # invoke(payload) -> (kind, body)
        self.region = region
        self.concurrency = max(1, int(esm.get("maximum_concurrency") or default_concurrency))
        self.report_failures = "ReportBatchItemFailures" in (
            esm.get("function_response_types") or [])
        self.idle_poll_secs = idle_poll_secs
        self.stopping = threading.Event()
        self.slots = threading.Semaphore(self.concurrency)
        self.in_flight = 0
        self.max_in_flight = 0
        self.last_empty = False
        self.lock = threading.Lock()
        self.stats = {"batches": 0, "messages": 0, "deleted": 0, "left": 0, "errors": 0}
        self.pool = concurrent.futures.ThreadPoolExecutor(self.concurrency,
                                                          thread_name_prefix="esm")
        self.thread = None

    def start(self):
        if self.esm.get("enabled", True) is False:
            return self
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"esm-{self.esm.get('function')}")
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        if self.thread:
            self.thread.join(timeout=10)
        self.pool.shutdown(wait=True, cancel_futures=True)

    def idle(self):
        """No batch in flight, and the last receive found nothing."""
        with self.lock:
            return self.in_flight == 0 and self.last_empty

    def _run(self):
        while not self.stopping.is_set():
            if not self.slots.acquire(timeout=0.5):
                continue
            try:
                got = self.sqs.receive_message(
                    QueueUrl=self.esm["queue_url"],
                    MaxNumberOfMessages=min(10, int(self.esm.get("batch_size") or 10)),
                    WaitTimeSeconds=0, AttributeNames=["All"],
                    MessageAttributeNames=["All"]).get("Messages", [])
            except Exception as e:  # the emulator is going away, or a transient error
                got = []
                self._error("receive", e)
            if not got:
                self.slots.release()
                with self.lock:
                    self.last_empty = True
                self.stopping.wait(self.idle_poll_secs)  # polling an external queue
                continue
            with self.lock:
                self.last_empty = False
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.pool.submit(self._batch, got)

    def _error(self, what, e):
        with self.lock:
            self.stats["errors"] += 1
        if not self.stopping.is_set():
            print(f"esm {self.esm.get('function')}: {what} failed: {e!r}", file=sys.stderr,
                  flush=True)

    def _batch(self, msgs):
        try:
            event = {"Records": [sqs_record(m, self.esm["queue_arn"], self.region)
                                 for m in msgs]}
            kind, answer = self.invoke(event)
            ids = {m["MessageId"] for m in msgs}
            failed = failed_ids(kind, answer, ids, self.report_failures)
            keep = ids if failed is None else failed
            done = [m for m in msgs if m["MessageId"] not in keep]
            for i in range(0, len(done), 10):
                self.sqs.delete_message_batch(QueueUrl=self.esm["queue_url"], Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(done[i:i + 10])])
            with self.lock:
                self.stats["batches"] += 1
                self.stats["messages"] += len(msgs)
                self.stats["deleted"] += len(done)
                self.stats["left"] += len(msgs) - len(done)
        except Exception as e:
            self._error("batch", e)
        finally:
            with self.lock:
                self.in_flight -= 1
            self.slots.release()


def wait_idle(pollers, deadline_secs=60.0):
    """Polls until every poller is idle (True) or the deadline passes (False)."""
    end = time.monotonic() + deadline_secs
    while time.monotonic() < end:
        if all(p.idle() for p in pollers):
            return True
        time.sleep(0.05)  # polling other threads' state, with a deadline
    return False


def scheduler_event(schedule, account, region, now=None):
    """The event EventBridge Scheduler sends a templated Lambda target: the schedule's Input
    when it has one, else its default notification (a captured one: version "0", detail-type
    "Scheduled Event", source "aws.scheduler", resources [the schedule's ARN], detail "{}" as a
    string)."""
    if schedule.get("input"):
        return json.loads(schedule["input"])
    import datetime
    import uuid
    t = datetime.datetime.fromtimestamp(now if now is not None else time.time(),
                                        datetime.timezone.utc)
    group = schedule.get("group") or "default"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": account,
        "time": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:scheduler:{region}:{account}:schedule/{group}/"
                      f"{schedule['name']}"],
        "detail": "{}",
    }
