"""Runs the emulated stack described by stack.json (scripts/aws_e2e/stack.py writes it): the five
functions under the Lambda Runtime API emulator with their own environment and role
credentials, the HTTP API as a local gateway with its JWT authorizer (a test issuer whose key
this harness makes), the SQS event source mappings, the schedule and Secrets Manager's
rotation driver.

    h = Harness(stack, out_dir)              # nothing runs yet
    h.start_gateway()                        # h.gateway_url (the simulator needs it first)
    h.start_functions(sim_url)               # the functions and the SQS pollers
    # or, in one step: Harness(stack, out_dir, sim_url).start()
    h.token("caller")                        # a JWT the gateway accepts
    h.invoke("send-sms", {...})              # ("response" | "error", body)
    h.fire_schedule()                        # the sweep, with Scheduler's event
    h.rotate(mode="auth-token")              # the four steps, as Secrets Manager drives them
    h.log_mark("send-sms"); h.logs_since("send-sms", mark); h.count_log("AccessDenied")
    h.stop()
"""

import os
import pathlib
import time
import uuid

import jwt as pyjwt
from botocore.config import Config
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import event_sources
import rotation
from gateway import Gateway
from lambda_emulator import FunctionEmulator
from stack import moto_session

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
MAX_POOL = 3


class RotationFailed(Exception):
    """A rotation step failed; `.outcome` holds every step's answer."""

    def __init__(self, outcome):
        self.outcome = outcome
        step, _, body = outcome["steps"][-1]
        kind = body.get("errorType") if isinstance(body, dict) else body
        super().__init__(f"rotation stopped at {step}: {kind}: "
                         f"{(body or {}).get('errorMessage', '') if isinstance(body, dict) else ''}")


class Harness:
    def __init__(self, stack, out_dir, sim_url=None, bin_dir=None):
        self.stack = stack
        self.out_dir = pathlib.Path(out_dir)
        self.log_dir = self.out_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.sim_url = sim_url
        self.bin_dir = pathlib.Path(bin_dir or os.environ.get("HERALD_BIN_DIR")
                                    or ROOT / "target" / "debug")
        self.region = stack.get("region", "us-east-1")
        self.account = stack.get("account", "123456789012")
        self.functions = {}
        self.pollers = []
        self.gateway = None
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwt_kid = uuid.uuid4().hex
        self.jwt_public_pem = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    # -- AWS clients (the stack's admin identity) ---------------------------------------------

    def admin_client(self, service):
        admin = self.stack["admin"]
        return self._client(service, admin["access_key_id"], admin["secret_access_key"])

    def role_client(self, function, service):
        """A client with `function`'s role credentials: what Lambda's event source poller uses
        (it reads and deletes queue messages as the function's execution role)."""
        c = self.stack["functions"][function]["credentials"]
        return self._client(service, c["access_key_id"], c["secret_access_key"],
                            c["session_token"])

    def _client(self, service, key_id, secret, token=None):
        # stack.moto_session signs the payload hash, which moto's signature check needs on
        # requests without a body (Lambda's GETs).
        return moto_session(key_id, secret, token, self.region).client(
            service, endpoint_url=self.stack["endpoint"],
            config=Config(retries={"max_attempts": 2, "mode": "standard"}))

    def sqs(self):
        return self.admin_client("sqs")

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, sim_url=None):
        self.start_gateway()
        self.start_functions(sim_url or self.sim_url)
        return self

    def start_gateway(self):
        api = self.stack.get("http_api")
        if api and self.gateway is None:
            self.gateway = Gateway(api, self._gateway_invoke, self.account, self.region,
                                   jwt_public_key=self.jwt_public_pem).start()
        return self

    @property
    def gateway_url(self):
        return self.gateway.url if self.gateway else None

    def pool_size(self, name):
        fn = self.stack["functions"][name]
        sizes = [e.get("maximum_concurrency") for e in self.stack.get("event_source_mappings", [])
                 if e["function"] == name and e.get("maximum_concurrency")]
        n = fn.get("reserved_concurrency") or (max(sizes) if sizes else 2)
        return max(1, min(MAX_POOL, int(n)))

    def overrides(self):
        # Twilio's two hosts (REST API, Accounts API for auth tokens) are the simulator.
        return {"AWS_ENDPOINT_URL": self.stack["endpoint"], "TWILIO_API_BASE_URL": self.sim_url,
                "TWILIO_ACCOUNTS_BASE_URL": self.sim_url}

    def start_functions(self, sim_url=None, names=None):
        if sim_url is not None:
            self.sim_url = sim_url
        for name in names or self.stack["functions"]:
            cfg = self.stack["functions"][name]
            emu = FunctionEmulator(name, [str(self.bin_dir / name)], cfg, self.region,
                                   self.overrides(), log_dir=self.log_dir,
                                   pool_size=self.pool_size(name))
            self.functions[name] = emu
        for emu in self.functions.values():  # launched together: the cold starts overlap
            emu.start(wait_secs=0)
        for emu in self.functions.values():
            emu.wait_started(60)
        for esm in self.stack.get("event_source_mappings", []):
            if esm["function"] not in self.functions:
                continue
            emu = self.functions[esm["function"]]
            sqs = self.role_client(esm["function"], "sqs")
            poller = event_sources.SqsPoller(esm, sqs, emu.invoke, self.region,
                                             default_concurrency=emu.pool_size)
            self.pollers.append(poller.start())
        return self

    def stop(self):
        for p in self.pollers:
            p.stop()
            print(f"     event source {p.esm['function']}: {p.stats}, at most {p.max_in_flight}"
                  f" batches at once", flush=True)
        if self.gateway:
            self.gateway.stop()
        for emu in self.functions.values():
            emu.stop()

    # -- invoking -----------------------------------------------------------------------------

    def _gateway_invoke(self, function, event, timeout):
        return self.functions[function].invoke(event)

    def invoke(self, function, payload):
        return self.functions[function].invoke(payload)

    def idle(self):
        return all(p.idle() for p in self.pollers)

    def token(self, sub, aud=None, exp=None, iss=None, scope=None, **claims):
        jwt_cfg = (self.stack.get("http_api") or {}).get("jwt") or {}
        now = int(time.time())
        doc = {"sub": sub, "iss": iss or jwt_cfg.get("issuer"),
               "aud": aud or (jwt_cfg.get("audience") or ["herald"])[0],
               "iat": now, "exp": exp if exp is not None else now + 3600,
               "jti": uuid.uuid4().hex}
        if scope:
            doc["scope"] = scope
        doc.update(claims)
        return pyjwt.encode(doc, self._key, algorithm="RS256", headers={"kid": self.jwt_kid})

    def fire_schedule(self, schedule=None):
        """Invokes the schedule's target with the event EventBridge Scheduler sends."""
        schedule = schedule or self.stack["schedules"][0]
        event = event_sources.scheduler_event(schedule, self.account, self.region)
        return self.invoke(schedule["target_function"], event)

    def rotate(self, mode=None, secret_arn=None, check=True):
        """One rotation as Secrets Manager drives it. With `mode` other than the function's
        ROTATION_MODE, the function's configuration is changed for it (UpdateFunctionConfiguration,
        new environments, as Lambda starts after a configuration change) and restored after."""
        sec = self.stack["secret"]
        name = sec["rotation_function"]
        fn = self.stack["functions"][name]
        secret_arn = secret_arn or sec["arn"]
        original = dict(fn.get("environment") or {})
        changed = mode is not None and original.get("ROTATION_MODE", "api-key") != mode
        if changed:
            self._set_environment(name, dict(original, ROTATION_MODE=mode))
        try:
            outcome = rotation.rotate(self.admin_client("secretsmanager"), self.stack["endpoint"],
                                      secret_arn, fn["function_arn"],
                                      sec.get("rotation_days") or 30, self.functions[name].invoke)
        finally:
            if changed:
                self._set_environment(name, original)
        if check and not outcome["ok"]:
            raise RotationFailed(outcome)
        return outcome

    def _set_environment(self, name, env):
        fn = self.stack["functions"][name]
        lam = self.admin_client("lambda")
        lam.update_function_configuration(FunctionName=fn["function_name"],
                                          Environment={"Variables": env})
        got = lam.get_function_configuration(FunctionName=fn["function_name"])
        fn["environment"] = dict((got.get("Environment") or {}).get("Variables") or {})
        self.functions[name].restart(fn)

    # -- logs ---------------------------------------------------------------------------------

    def log_mark(self, function):
        return self.functions[function].mark()

    def logs_since(self, function, mark=0):
        return self.functions[function].lines_since(mark)

    def logs(self, function):
        return self.functions[function].lines_since(0)

    def count_log(self, needle, function=None):
        names = [function] if function else list(self.functions)
        return sum(1 for n in names for line in self.functions[n].lines_since(0)
                   if needle in line)
