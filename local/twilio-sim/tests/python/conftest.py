"""Fixtures: a twilio-sim binary on a loopback port, a Twilio SDK client, a webhook receiver.

The binary comes from TWILIO_SIM_BIN (scripts/test.sh sets it to target/debug/twilio-sim).
Credentials are made up: nothing here talks to Twilio.
"""

import os
import selectors
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest
from twilio.rest import Client

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "py-test-auth-token-not-real"
KEY_SID = "SKfedcba9876543210fedcba9876543210"
KEY_SECRET = "py-test-key-secret-not-real"
FROM = "+15005550006"
WAIT = 30  # seconds: generous bound for events that normally take milliseconds

# The SDK uses requests, which honours proxy variables: keep loopback traffic local.
os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
os.environ["no_proxy"] = os.environ["NO_PROXY"]


def _binary():
    path = os.environ.get("TWILIO_SIM_BIN")
    if not path:
        root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
        path = os.path.join(root, "target", "debug", "twilio-sim")
    if not os.access(path, os.X_OK):
        pytest.fail(f"twilio-sim binary not found at {path}: build it or set TWILIO_SIM_BIN")
    return path


class Sim:
    """A running twilio-sim process."""

    def __init__(self, extra_args=()):
        args = [
            _binary(),
            "--port", "0",
            "--account-sid", ACCOUNT_SID,
            "--auth-token", AUTH_TOKEN,
            "--api-key", f"{KEY_SID}:{KEY_SECRET}",
            "--seed", "7",
            *extra_args,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout=WAIT)
        sel.close()
        line = self.proc.stdout.readline() if ready else ""
        prefix = "twilio-sim listening on "
        if not line.startswith(prefix):
            self.stop()
            raise RuntimeError(f"unexpected first line {line!r}; stderr: {self.proc.stderr.read()}")
        self.url = line[len(prefix):].strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=WAIT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()

    def client(self, username=ACCOUNT_SID, password=AUTH_TOKEN):
        client = Client(username, password, ACCOUNT_SID)
        # Every v2010 request goes through the Api domain: its base_url is the host part.
        client.api.base_url = self.url
        return client

    def get(self, path):
        import json
        import urllib.request

        with urllib.request.urlopen(self.url + path, timeout=WAIT) as resp:
            return json.load(resp)

    def post(self, path, payload=None):
        import json
        import urllib.request

        req = urllib.request.Request(
            self.url + path,
            data=json.dumps(payload or {}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=WAIT) as resp:
            return json.load(resp)


@pytest.fixture
def sim():
    s = Sim()
    yield s
    s.stop()


@pytest.fixture
def manual_sim():
    s = Sim(["--manual-callbacks"])
    yield s
    s.stop()


class Receiver:
    """Records webhook POSTs; paths starting with /fail answer 500."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.changed = threading.Condition(self.lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode("utf-8")
                record = {
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                    "params": dict(parse_qsl(body, keep_blank_values=True)),
                }
                # Recorded before answering: the simulator sends a message's next callback only
                # after this answer, so the record order is the order they were sent.
                with receiver.changed:
                    receiver.requests.append(record)
                    receiver.changed.notify_all()
                self.send_response(500 if self.path.startswith("/fail") else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count, predicate=lambda r: True, timeout=WAIT):
        """Blocks until `count` recorded requests match, or fails after `timeout` seconds."""
        with self.changed:
            ok = self.changed.wait_for(lambda: len([r for r in self.requests if predicate(r)]) >= count, timeout)
            matching = [r for r in self.requests if predicate(r)]
        assert ok, f"expected {count} callbacks, got {len(matching)}"
        return matching

    def snapshot(self):
        with self.lock:
            return list(self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()
