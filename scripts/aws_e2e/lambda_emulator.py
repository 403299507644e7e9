"""A Lambda Runtime API emulator: runs one function's binary as Lambda runs a `provided.al2023`
function, a small pool of execution environments (processes), each polling its own Runtime API
endpoint (`AWS_LAMBDA_RUNTIME_API`) for one invocation at a time.

What Lambda does and this plays:
- each environment starts with exactly the function's configured environment plus the variables
  Lambda itself sets (nothing is inherited from this process: the environment starts empty);
  the two emulation overrides are `AWS_ENDPOINT_URL` (the AWS emulator) and
  `TWILIO_API_BASE_URL` (the Twilio simulator);
- `GET /2018-06-01/runtime/invocation/next` long-polls and answers an event with the headers
  `lambda_runtime` requires (`Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`,
  `Lambda-Runtime-Invoked-Function-Arn`, `Lambda-Runtime-Trace-Id`);
- `POST …/invocation/{id}/response`, `…/invocation/{id}/error`, `/runtime/init/error`;
- an invocation that outlives the function's timeout is answered `Sandbox.Timedout` and its
  environment is killed and replaced; an environment that exits answers its invocation
  `Runtime.ExitError` and is replaced; an environment whose init failed answers the next
  invocation with that init error (as a cold start does) and is replaced;
- every line an environment prints is kept (tagged with the request id it printed it during)
  in memory and in `<log_dir>/<function>.log`.

    fn = FunctionEmulator("send-sms", ["target/debug/send-sms"], config, ...)
    fn.start(); kind, body = fn.invoke({"Records": [...]}); fn.stop()

`kind` is "response" (body: the function's JSON answer) or "error" (body: Lambda's error
document, `{"errorType": ..., "errorMessage": ...}`).
"""

import collections
import datetime
import json
import os
import pathlib
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = "/2018-06-01/runtime"
# Lambda's PATH for provided.al2023.
LAMBDA_PATH = "/usr/local/bin:/usr/bin/:/bin:/opt/bin"


class Invocation:
    def __init__(self, payload, request_id):
        self.payload = payload
        self.request_id = request_id
        self.cond = threading.Condition()
        self.dispatched_at = None  # monotonic seconds when an environment took it
        self.instance = None
        self.result = None  # (kind, body)

    def dispatch(self, instance):
        with self.cond:
            self.instance = instance
            self.dispatched_at = time.monotonic()
            self.cond.notify_all()

    def finish(self, kind, body):
        """Answers the invocation; False when it was already answered."""
        with self.cond:
            if self.result is not None:
                return False
            self.result = (kind, body)
            self.cond.notify_all()
            return True


def _trace_id():
    return (f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
            f"Parent={uuid.uuid4().hex[:16]};Sampled=0;Lineage=1:{uuid.uuid4().hex[:8]}:0")


class _Instance:
    """One execution environment: its Runtime API endpoint (kept across restarts) and its
    current process."""

    def __init__(self, fn, index):
        self.fn = fn
        self.index = index
        self.gen = 0
        self.proc = None
        self.current = None  # the Invocation it is running
        self.init_error = None
        self.ready = threading.Event()  # reached /next since its last start
        self.started = threading.Event()  # ready or failed, since its last start
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name=f"{fn.name}-{index}-runtime-api")
        self.thread.start()

    @property
    def runtime_api(self):
        return f"127.0.0.1:{self.server.server_address[1]}"

    def launch(self):
        self.gen += 1
        self.init_error = None
        self.ready.clear()
        self.started.clear()
        env = self.fn.environment_for(self)
        self.proc = subprocess.Popen(
            self.fn.command, env=env, cwd=self.fn.cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc, gen = self.proc, self.gen
        for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
            threading.Thread(target=self._read, args=(stream, name), daemon=True).start()
        threading.Thread(target=self._watch, args=(proc, gen), daemon=True).start()

    def _read(self, stream, name):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            cur = self.current
            self.fn.log(self.index, cur.request_id if cur else None, name, line)
        stream.close()

    def _watch(self, proc, gen):
        code = proc.wait()
        if self.fn.stopping:
            return
        how = f"signal: {-code}" if code < 0 else f"exit status {code}"
        if self.gen != gen:
            return
        cur, self.current = self.current, None
        was_ready = self.ready.is_set()
        self.started.set()
        if cur is not None:
            cur.finish("error", {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {cur.request_id} Error: Runtime exited with "
                                f"error: {how}"})
        if not was_ready:
            # A failed init: the next invocation's cold start fails with it (Lambda answers
            # the invocation that triggered the init), then a new environment is tried.
            err = self.init_error or {"errorType": "Runtime.ExitError",
                                      "errorMessage": f"Runtime exited without providing a "
                                                      f"reason: {how}"}
            self.fn.log(self.index, None, "platform", f"INIT_REPORT Status: error "
                                                      f"ErrorType: {err.get('errorType')}")
            item = self.fn.take(lambda: self.fn.stopping)
            if item is None:
                return
            item.dispatch(self)
            item.finish("error", {"errorType": err.get("errorType", "Runtime.Unknown"),
                                  "errorMessage": err.get("errorMessage", "")})
        if not self.fn.stopping:
            self.launch()

    def kill(self):
        p = self.proc
        if p is not None and p.poll() is None:
            p.kill()


def _handler_for(inst):
    fn = inst.fn

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _send(self, status, doc, headers=None):
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path != f"{API}/invocation/next":
                return self._send(404, {"errorType": "NotFound", "errorMessage": self.path})
            gen = inst.gen
            inst.ready.set()
            inst.started.set()
            item = fn.take(lambda: fn.stopping or inst.gen != gen
                           or (inst.proc is not None and inst.proc.poll() is not None))
            if item is None:
                self.close_connection = True
                return
            inst.current = item
            item.dispatch(inst)
            deadline = int(time.time() * 1000) + int(fn.timeout * 1000)
            headers = {
                "Lambda-Runtime-Aws-Request-Id": item.request_id,
                "Lambda-Runtime-Deadline-Ms": str(deadline),
                "Lambda-Runtime-Invoked-Function-Arn": fn.function_arn,
                "Lambda-Runtime-Trace-Id": _trace_id(),
            }
            data = item.payload
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
            except OSError:
                inst.current = None
                fn.requeue(item)
                return
            fn.log(inst.index, item.request_id, "platform",
                   f"START RequestId: {item.request_id} Version: $LATEST")

        def do_POST(self):
            body = self._body()
            path = self.path
            if path == f"{API}/init/error":
                try:
                    inst.init_error = json.loads(body or b"{}")
                except ValueError:
                    inst.init_error = {"errorType": self.headers.get(
                        "Lambda-Runtime-Function-Error-Type", "Runtime.Unknown"),
                        "errorMessage": body.decode("utf-8", "replace")}
                return self._send(202, {"status": "OK"})
            parts = path[len(API):].split("/") if path.startswith(API) else []
            # ['', 'invocation', '<id>', 'response' | 'error']
            if len(parts) != 4 or parts[1] != "invocation" or parts[3] not in ("response",
                                                                               "error"):
                return self._send(404, {"errorType": "NotFound", "errorMessage": path})
            rid, what = parts[2], parts[3]
            cur = inst.current
            if cur is None or cur.request_id != rid:
                return self._send(400, {"errorType": "InvalidRequestID",
                                        "errorMessage": "Invalid request ID"})
            inst.current = None
            if what == "response":
                try:
                    doc = json.loads(body) if body else None
                    kind = "response"
                except ValueError:
                    kind, doc = "error", {"errorType": "Runtime.InvalidResponsePayload",
                                          "errorMessage": "the response is not JSON"}
            else:
                kind = "error"
                try:
                    doc = json.loads(body or b"{}")
                except ValueError:
                    doc = {"errorType": self.headers.get("Lambda-Runtime-Function-Error-Type",
                                                         "Runtime.Unknown"),
                           "errorMessage": body.decode("utf-8", "replace")}
            elapsed = time.monotonic() - (cur.dispatched_at or time.monotonic())
            cur.finish(kind, doc)
            fn.log(inst.index, rid, "platform",
                   f"END RequestId: {rid} ({kind}, {elapsed * 1000:.1f} ms)")
            return self._send(202, {"status": "OK"})

    return Handler


class FunctionEmulator:
    """One function: `pool_size` environments of `command`, invoked one event at a time each.

    config: the function's entry of stack.json (function_name, function_arn, timeout,
    memory_size, log_group, log_format, environment, credentials). overrides: the emulation
    overrides (AWS_ENDPOINT_URL, TWILIO_API_BASE_URL), added last.
    """

    def __init__(self, name, command, config, region, overrides, log_dir=None, pool_size=1,
                 cwd=None):
        self.name = name
        self.command = list(command)
        self.config = config
        self.region = region
        self.overrides = dict(overrides)
        self.pool_size = max(1, int(pool_size))
        self.cwd = cwd or str(pathlib.Path(self.command[0]).resolve().parent)
        self.timeout = float(config.get("timeout") or 3)
        self.function_arn = config.get("function_arn") or (
            f"arn:aws:lambda:{region}:123456789012:function:{self.function_name}")
        self.stopping = False
        self.queue = collections.deque()
        self.qcond = threading.Condition()
        self.instances = []
        self.lines = []
        self.lines_lock = threading.Lock()
        self.log_file = None
        if log_dir is not None:
            pathlib.Path(log_dir).mkdir(parents=True, exist_ok=True)
            self.log_file = open(pathlib.Path(log_dir) / f"{name}.log", "a", buffering=1)

    @property
    def function_name(self):
        return self.config.get("function_name") or self.name

    # -- environment --------------------------------------------------------------------------

    def environment_for(self, inst):
        """Exactly what Lambda gives a provided.al2023 environment, plus the overrides."""
        c = self.config
        env = {"PATH": LAMBDA_PATH, "LANG": "en_US.UTF-8"}
        env.update({k: str(v) for k, v in (c.get("environment") or {}).items()})
        today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y/%m/%d")
        lam = {
            "AWS_LAMBDA_RUNTIME_API": inst.runtime_api,
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(c.get("memory_size") or 128),
            "AWS_LAMBDA_LOG_GROUP_NAME": c.get("log_group") or f"/aws/lambda/{self.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{today}/[$LATEST]{uuid.uuid4().hex}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
            "_HANDLER": c.get("handler") or "bootstrap",
            "LAMBDA_TASK_ROOT": self.cwd,
            "LAMBDA_RUNTIME_DIR": self.cwd,
            "TZ": ":UTC",
        }
        if (c.get("log_format") or "Text") == "JSON":
            lam["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
            lam["AWS_LAMBDA_LOG_LEVEL"] = c.get("application_log_level") or "INFO"
        creds = c.get("credentials") or {}
        if creds:
            lam["AWS_ACCESS_KEY_ID"] = creds["access_key_id"]
            lam["AWS_SECRET_ACCESS_KEY"] = creds["secret_access_key"]
            if creds.get("session_token"):
                lam["AWS_SESSION_TOKEN"] = creds["session_token"]
        env.update(lam)  # Lambda's reserved variables win over the function's
        env.update({k: v for k, v in self.overrides.items() if v is not None})
        return env

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, wait_secs=60.0):
        self.stopping = False
        for i in range(self.pool_size):
            inst = _Instance(self, i)
            self.instances.append(inst)
            inst.launch()
        if wait_secs:
            self.wait_started(wait_secs)
        return self

    def wait_started(self, wait_secs=60.0):
        """Waits until every environment reached /next or failed its init."""
        end = time.monotonic() + wait_secs
        for inst in self.instances:
            inst.started.wait(max(0.0, end - time.monotonic()))
        return all(i.ready.is_set() for i in self.instances)

    def restart(self, config=None, wait_secs=60.0):
        """New environments (e.g. after a configuration change), as Lambda starts new ones."""
        if config is not None:
            self.config = config
            self.timeout = float(config.get("timeout") or self.timeout)
        for inst in self.instances:
            inst.gen += 1  # the watcher of the old process does not relaunch it
            inst.kill()
            cur, inst.current = inst.current, None
            if cur is not None:
                cur.finish("error", {"errorType": "Runtime.ExitError",
                                     "errorMessage": "the environment was replaced"})
            inst.launch()
        return self.wait_started(wait_secs)

    def stop(self):
        self.stopping = True
        with self.qcond:
            self.qcond.notify_all()
        for inst in self.instances:
            inst.kill()
        for inst in self.instances:
            if inst.proc is not None:
                try:
                    inst.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            inst.server.shutdown()
            inst.server.server_close()
        with self.qcond:
            while self.queue:
                self.queue.popleft().finish("error", {"errorType": "ServiceException",
                                                      "errorMessage": "the emulator stopped"})
        if self.log_file:
            self.log_file.close()
            self.log_file = None

    # -- queue --------------------------------------------------------------------------------

    def take(self, give_up):
        with self.qcond:
            while True:
                if self.queue:
                    return self.queue.popleft()
                if give_up():
                    return None
                self.qcond.wait(0.2)

    def requeue(self, item):
        with self.qcond:
            self.queue.appendleft(item)
            self.qcond.notify()

    def invoke(self, payload, queue_secs=120.0):
        """Invokes the function (RequestResponse) and waits for its answer or its timeout."""
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        item = Invocation(raw, str(uuid.uuid4()))
        with self.qcond:
            self.queue.append(item)
            self.qcond.notify()
        queued_until = time.monotonic() + queue_secs
        with item.cond:
            while item.result is None:
                now = time.monotonic()
                if item.dispatched_at is None:
                    if now > queued_until:
                        break
                    item.cond.wait(min(0.5, queued_until - now))
                    continue
                # Lambda's hard deadline, and a little for the answer to arrive.
                due = item.dispatched_at + self.timeout + 0.25
                if now >= due:
                    break
                item.cond.wait(due - now)
        if item.result is not None:
            return item.result
        if item.dispatched_at is None:
            with self.qcond:
                try:
                    self.queue.remove(item)
                except ValueError:
                    pass
            if item.finish("error", {"errorType": "TooManyRequestsException",
                                     "errorMessage": "Rate Exceeded."}):
                return item.result
            return item.result
        if item.finish("error", {"errorType": "Sandbox.Timedout",
                                 "errorMessage": f"RequestId: {item.request_id} Error: Task "
                                                 f"timed out after {self.timeout:.2f} seconds"}):
            inst = item.instance
            self.log(inst.index, item.request_id, "platform",
                     f"REPORT RequestId: {item.request_id} Status: timeout")
            if inst is not None and inst.current is item:
                inst.kill()  # its watcher answers nothing (answered) and starts a new one
        return item.result

    # -- logs ---------------------------------------------------------------------------------

    def log(self, instance, request_id, stream, line):
        entry = {"t": time.time(), "instance": instance, "request_id": request_id,
                 "stream": stream, "line": line}
        with self.lines_lock:
            self.lines.append(entry)
            if self.log_file:
                self.log_file.write(f"{request_id or '-'} [{instance}] {stream}: {line}\n")

    def mark(self):
        with self.lines_lock:
            return len(self.lines)

    def lines_since(self, mark=0, streams=("stdout", "stderr")):
        with self.lines_lock:
            return [e["line"] for e in self.lines[mark:] if e["stream"] in streams]

    def entries_for(self, request_id):
        with self.lines_lock:
            return [e for e in self.lines if e["request_id"] == request_id]
