"""The HTTP API (API Gateway v2) of stack.json's `http_api`, played on 127.0.0.1: route
selection, throttles, the JWT authorizer and the Lambda proxy integration (payload 2.0).

- Routes: method + path template (`{id}`, greedy `{proxy+}`), the most specific match wins
  (literal segments over variables over greedy, then exact method over ANY); no match is
  404 {"message":"Not Found"}.
- Throttles: a token bucket per route (`throttle`, else `default_throttle`; burst, rate per
  second) on an injectable clock; empty is 429 {"message":"Too Many Requests"}.
- JWT authorizer: the bearer token must be an RS256 JWT signed by the test issuer's key, with
  `iss` == jwt.issuer, `aud` in jwt.audience, not expired (and not before nbf) with a small
  leeway; otherwise 401 {"message":"Unauthorized"} with `www-authenticate`, and the function
  is not invoked. Valid claims go to requestContext.authorizer.jwt.claims (as strings, lists
  as "[a b]") and .scopes (the `scope`/`scp` claim, or null).
- The event is the payload 2.0 event API Gateway builds; bodies are base64-encoded
  (isBase64Encoded true) unless the content type is text/*, application/json, application/xml
  or application/javascript, as real HTTP APIs do (form posts are base64).
- The answer: a `statusCode` document (headers, multiValueHeaders, cookies, body,
  isBase64Encoded), or any other JSON as a 200 application/json body; an error or a
  non-JSON answer is 500 {"message":"Internal Server Error"}; no answer within the route's
  integration timeout (at most 30 s) is 503 {"message":"Service Unavailable"}.

    gw = Gateway(http_api, invoke=lambda fn, event, timeout: (kind, body), account=..., region=...,
                 jwt_public_key=pem); gw.start(); gw.url; gw.stop()
"""

import base64
import concurrent.futures
import datetime
import json
import re
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt as pyjwt

TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
MAX_INTEGRATION_MS = 30_000
JWT_LEEWAY_SECS = 5


def _json_answer(status, doc, extra=None):
    return status, {"Content-Type": "application/json", **(extra or {})}, json.dumps(doc).encode()


class TokenBucket:
    def __init__(self, burst, rate, clock):
        self.capacity = float(burst)
        self.rate = float(rate)
        self.clock = clock
        self.tokens = float(burst)
        self.at = clock()
        self.lock = threading.Lock()

    def take(self):
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


class Route:
    def __init__(self, spec):
        self.spec = spec
        self.method = spec["method"].upper()
        self.path = spec["path"]
        self.function = spec["function"]
        self.segments = [s for s in self.path.split("/") if s != ""]
        self.route_key = f"{self.method} {self.path}" if self.path != "$default" else "$default"

    def match(self, method, segs):
        """(rank, path parameters) when the route matches, else None. Lower rank wins."""
        if self.path == "$default":
            return (9, (), 1), {}
        if self.method not in (method, "ANY"):
            return None
        params, rank = {}, []
        for i, s in enumerate(self.segments):
            m = re.fullmatch(r"\{([^}]+)\+\}", s)
            if m:
                if i != len(self.segments) - 1 or len(segs) <= i:
                    return None
                params[m.group(1)] = "/".join(segs[i:])
                rank.append(2)
                return (len(self.segments), tuple(rank), 0 if self.method == method else 1), params
            if i >= len(segs):
                return None
            m = re.fullmatch(r"\{([^}]+)\}", s)
            if m:
                params[m.group(1)] = segs[i]
                rank.append(1)
            elif s == segs[i]:
                rank.append(0)
            else:
                return None
        if len(segs) != len(self.segments):
            return None
        return (0, tuple(rank), 0 if self.method == method else 1), params


def _stringify_claim(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_stringify_claim(x) for x in v) + "]"
    if isinstance(v, dict):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


class Gateway:
    def __init__(self, http_api, invoke, account, region, jwt_public_key=None, clock=None,
                 wall_clock=None, source_ip="127.0.0.1"):
        self.api = http_api
        self.invoke = invoke
        self.account = account
        self.region = region
        self.jwt_public_key = jwt_public_key
        self.clock = clock or time.monotonic
        self.wall_clock = wall_clock or time.time
        self.source_ip = source_ip
        self.api_id = http_api["api_id"]
        self.domain = urlsplit(http_api.get("base_url") or "").hostname or (
            f"{self.api_id}.execute-api.{region}.amazonaws.com")
        self.routes = [Route(r) for r in http_api["routes"]]
        default = http_api.get("default_throttle")
        self.buckets = {}
        for r in self.routes:
            t = r.spec.get("throttle") or default
            if t and t.get("burst") is not None and t.get("rate") is not None:
                self.buckets[r.route_key] = TokenBucket(t["burst"], t["rate"], self.clock)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=32,
                                                          thread_name_prefix="gw-invoke")
        self.server = None
        self.requests = []  # (route_key or None, status) of every request, for the tests

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self):
        gw = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _serve(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                status, headers, data = gw.handle(self.command, self.path,
                                                  list(self.headers.items()), body,
                                                  self.client_address[0])
                self.send_response(status)
                cookies = headers.pop("__cookies__", [])
                for k, v in headers.items():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                for c in cookies:
                    self.send_header("Set-Cookie", c)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True, name="gateway").start()
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- one request --------------------------------------------------------------------------

    def select(self, method, raw_path):
        segs = [unquote(s) for s in raw_path.split("/") if s != ""]
        best = None
        for r in self.routes:
            m = r.match(method.upper(), segs)
            if m and (best is None or m[0] < best[0]):
                best = (m[0], r, m[1])
        return (best[1], best[2]) if best else (None, None)

    def authorize(self, headers):
        """The JWT authorizer: (claims, scopes) or None."""
        cfg = self.api.get("jwt") or {}
        source = cfg.get("identity_source") or "$request.header.Authorization"
        name = source.rsplit(".", 1)[-1].lower()
        value = headers.get(name)
        if not value or self.jwt_public_key is None:
            return None
        token = value[7:] if value[:7].lower() == "bearer " else value
        audience = cfg.get("audience") or []
        try:
            claims = pyjwt.decode(
                token.strip(), self.jwt_public_key, algorithms=["RS256"],
                issuer=cfg.get("issuer"), options={"verify_aud": False, "require": ["exp"]},
                leeway=JWT_LEEWAY_SECS)
        except pyjwt.PyJWTError:
            return None
        aud = claims.get("aud", claims.get("client_id"))
        auds = aud if isinstance(aud, list) else [aud]
        if not any(a in audience for a in auds if a is not None):
            return None
        scope = claims.get("scope", claims.get("scp"))
        scopes = (scope.split() if isinstance(scope, str) else list(scope)) if scope else None
        return {k: _stringify_claim(v) for k, v in claims.items()}, scopes

    def handle(self, method, target, header_items, body, client_ip=None):
        request_id = base64.b64encode(secrets.token_bytes(10)).decode().rstrip("=") + "="
        split = urlsplit(target)
        raw_path, raw_query = split.path or "/", split.query
        route, params = self.select(method, raw_path)
        if route is None:
            self.requests.append((None, 404))
            return _json_answer(404, {"message": "Not Found"}, {"apigw-requestid": request_id})
        bucket = self.buckets.get(route.route_key)
        if bucket is not None and not bucket.take():
            self.requests.append((route.route_key, 429))
            return _json_answer(429, {"message": "Too Many Requests"},
                                {"apigw-requestid": request_id})
        headers = {}
        for k, v in header_items:
            k = k.lower()
            headers[k] = f"{headers[k]},{v}" if k in headers else v
        authorizer = None
        if route.spec.get("authorizer"):
            auth = self.authorize(headers)
            if auth is None:
                self.requests.append((route.route_key, 401))
                return _json_answer(401, {"message": "Unauthorized"}, {
                    "www-authenticate": 'Bearer scope="" error="invalid_token" '
                                        'error_description="the token is not valid"',
                    "apigw-requestid": request_id})
            authorizer = {"jwt": {"claims": auth[0], "scopes": auth[1]}}
        event = self.event(method, raw_path, raw_query, headers, body, route, params,
                           request_id, authorizer, client_ip or self.source_ip)
        timeout = min(int(route.spec.get("timeout_ms") or MAX_INTEGRATION_MS),
                      MAX_INTEGRATION_MS) / 1000.0
        future = self.pool.submit(self.invoke, route.function, event, timeout)
        try:
            kind, answer = future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            self.requests.append((route.route_key, 503))
            return _json_answer(503, {"message": "Service Unavailable"},
                                {"apigw-requestid": request_id})
        status, out_headers, data = self.response(kind, answer)
        out_headers["apigw-requestid"] = request_id
        self.requests.append((route.route_key, status))
        return status, out_headers, data

    def event(self, method, raw_path, raw_query, headers, body, route, params, request_id,
              authorizer, source_ip):
        headers = dict(headers)
        cookies = None
        if "cookie" in headers:
            cookies = [c.strip() for c in re.split(r"[;,]", headers.pop("cookie")) if c.strip()]
        for hop in ("connection", "keep-alive", "proxy-connection", "te", "upgrade"):
            headers.pop(hop, None)
        headers["host"] = self.domain
        prior = headers.get("x-forwarded-for")
        headers["x-forwarded-for"] = f"{prior}, {source_ip}" if prior else source_ip
        headers["x-forwarded-port"] = "443"
        headers["x-forwarded-proto"] = "https"
        headers["x-amzn-trace-id"] = (f"Root=1-{int(self.wall_clock()):08x}-"
                                      f"{uuid.uuid4().hex[:24]}")
        qs = {}
        for k, v in parse_qsl(raw_query, keep_blank_values=True):
            qs[k] = f"{qs[k]},{v}" if k in qs else v
        now = self.wall_clock()
        ctx = {
            "accountId": self.account,
            "apiId": self.api_id,
            "domainName": self.domain,
            "domainPrefix": self.domain.split(".")[0],
            "http": {"method": method.upper(), "path": raw_path, "protocol": "HTTP/1.1",
                     "sourceIp": source_ip, "userAgent": headers.get("user-agent", "")},
            "requestId": request_id,
            "routeKey": route.route_key,
            "stage": "$default",
            "time": datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
                    .strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        }
        if authorizer is not None:
            ctx["authorizer"] = authorizer
        event = {"version": "2.0", "routeKey": route.route_key, "rawPath": raw_path,
                 "rawQueryString": raw_query}
        if cookies:
            event["cookies"] = cookies
        event["headers"] = headers
        if qs:
            event["queryStringParameters"] = qs
        if params:
            event["pathParameters"] = params
        event["requestContext"] = ctx
        if body:
            ctype = headers.get("content-type", "").lower()
            text = any(ctype.startswith(t) for t in TEXT_TYPES)
            try:
                event["body"] = body.decode("utf-8") if text else base64.b64encode(body).decode()
            except UnicodeDecodeError:
                text = False
                event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = not text
        else:
            event["isBase64Encoded"] = False
        return event

    @staticmethod
    def response(kind, answer):
        internal = _json_answer(500, {"message": "Internal Server Error"})
        if kind != "response":
            return internal
        if isinstance(answer, dict) and "statusCode" in answer:
            try:
                status = int(answer["statusCode"])
            except (TypeError, ValueError):
                return internal
            if not 100 <= status <= 599:
                return internal
            headers = {}
            for k, vs in (answer.get("multiValueHeaders") or {}).items():
                headers[k] = ",".join(str(v) for v in vs)
            for k, v in (answer.get("headers") or {}).items():
                headers[k] = str(v)
            body = answer.get("body") or ""
            if answer.get("isBase64Encoded"):
                try:
                    data = base64.b64decode(body)
                except ValueError:
                    return internal
            else:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            headers["__cookies__"] = list(answer.get("cookies") or [])
            return status, headers, data
        # Any other JSON: API Gateway infers 200 with the JSON as the body.
        return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()
