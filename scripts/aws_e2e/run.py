"""scripts/aws-e2e.sh's driver: Herald's real template, deployed into a moto server with IAM
enforced, run as AWS runs it, and every flow asserted.

1. moto starts on a loopback port with `INITIAL_NO_AUTH_ACTION_COUNT` = the set-up calls of
   stack.py, so every later call must be signed by an identity whose policy allows it.
2. stack.py translates infra/template.yaml with the SAM translator, creates the stack in moto,
   prints what moto skipped and describes the created stack (stack.json).
3. The harness plays what moto skipped (the HTTP API as a gateway with its JWT authorizer and
   throttles, the sweep schedule, the secret and Secrets Manager's rotation) and runs the five
   binaries under a Lambda Runtime API emulator, each with its function's environment as moto
   holds it and its own role's credentials; the stack's SQS event source mappings drive them.
4. The Twilio simulator plays Twilio; its callbacks reach webhook-receiver through the gateway.
5. The flows run (flows.py); then the negative control (one action taken from one role: that
   flow must fail with AccessDenied in the log and a problem+json 503); then every recorded AWS
   call is checked against its function's real policy by an IAM evaluator that is not ours.

    .venv/bin/python scripts/aws_e2e/run.py [--keep] [--out DIR]
"""

import argparse
import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import time
import traceback

here = pathlib.Path(__file__).resolve().parent
root = here.parent.parent
sys.path.insert(0, str(here))

import flows  # noqa: E402
import logs_query  # noqa: E402
import stack as stack_mod  # noqa: E402
from harness import Harness  # noqa: E402


def start_moto(out_dir):
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(stack_mod.SETUP_CALLS))
    log = open(out_dir / "moto.log", "w")
    proc = subprocess.Popen(
        [sys.executable, str(root / "scripts" / "moto_server.py"), "--until-stdin-closes",
         "--external-event-sources"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, text=True)
    port = proc.stdout.readline().strip()
    if not port.isdigit():
        proc.kill()
        raise SystemExit(f"moto server did not start (see {out_dir / 'moto.log'})")
    return proc, f"http://127.0.0.1:{port}"


def sim_credentials():
    """The secret's first value: the simulator's account, auth token and an API key made for
    this run (the operator's "Set the secret" after the first deploy)."""
    return {"account_sid": stack_mod.SIM_ACCOUNT_SID, "api_key_sid": "SK" + secrets.token_hex(16),
            "api_key_secret": secrets.token_urlsafe(24), "auth_token": "sim-auth-token"}


def start_sim(out_dir, deliver_from, deliver_to, creds):
    """The Twilio simulator; what it sends to the API's public URL goes to the gateway."""
    binary = os.environ.get("TWILIO_SIM_BIN", str(root / "target" / "debug" / "twilio-sim"))
    log = open(out_dir / "twilio-sim.log", "w")
    proc = subprocess.Popen(
        [binary, "--deliver-to", f"{deliver_from}={deliver_to}",
         "--account-sid", creds["account_sid"], "--auth-token", creds["auth_token"],
         "--api-key", f"{creds['api_key_sid']}:{creds['api_key_secret']}"],
        stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline().strip()
    prefix = "twilio-sim listening on "
    if not line.startswith(prefix):
        proc.kill()
        raise SystemExit(f"twilio-sim did not start: {line!r}")
    return proc, line[len(prefix):]


def post_json(url, body):
    import urllib.request
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def get_json(url):
    import urllib.request
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def run_flows(ctx, results, only=None):
    ok = True
    for flow in flows.FLOWS:
        if only and flow.__name__ not in only:
            continue
        started = time.monotonic()
        ctx.as_caller(f"e2e-{flow.__name__}")
        try:
            detail = flow(ctx)
            results.append({"flow": flow.__name__, "ok": True, "detail": detail})
            print(f"  PASS {flow.__name__:32} {time.monotonic() - started:6.1f} s  {detail}",
                  flush=True)
        except Exception as e:  # a failed flow is reported, and the others still run
            ok = False
            results.append({"flow": flow.__name__, "ok": False, "detail": str(e)})
            print(f"  FAIL {flow.__name__:32} {time.monotonic() - started:6.1f} s  {e}",
                  flush=True)
            traceback.print_exc(limit=3)
    return ok


NEGATIVE_CONTROL = {"function": "send-sms", "action": "secretsmanager:GetSecretValue"}


def negative_control(ctx, harness, stack):
    """Takes secretsmanager:GetSecretValue from send-sms's role (only its TwilioSecret statement
    grants it) and starts fresh send-sms instances, which have no credentials cached, as after a
    deploy: POST /v1/messages must then answer 503 problem+json, and send-sms's log must show
    the AccessDenied. The role and the instances are restored afterwards."""
    fn = stack["functions"]["send-sms"]
    iam = harness.admin_client("iam")
    (policy,) = fn["policies"]
    original = policy["document"]
    reduced = json.loads(json.dumps(original))
    removed = False
    for st in reduced["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if NEGATIVE_CONTROL["action"] in actions:
            st["Action"] = [a for a in actions if a != NEGATIVE_CONTROL["action"]]
            removed = True
    reduced["Statement"] = [st for st in reduced["Statement"] if st["Action"]]
    if not removed:
        raise flows.FlowFailed(f"send-sms's role grants no {NEGATIVE_CONTROL['action']}")
    iam.put_role_policy(RoleName=fn["role_name"], PolicyName=policy["name"],
                        PolicyDocument=json.dumps(reduced))
    harness.functions["send-sms"].restart(fn)
    try:
        mark = harness.log_mark("send-sms")
        to = flows.numbers(2700, 1)[0]
        ctx.outcome(to, "deliver")
        s, h, d = ctx.send(to, "Denied by design.")
        if s != 503 or "application/problem+json" not in h.get("Content-Type", ""):
            raise flows.FlowFailed(f"without {NEGATIVE_CONTROL['action']} the send answered {s} "
                                   f"{h.get('Content-Type')}, expected 503 problem+json")
        lines = harness.logs_since("send-sms", mark)
        if not any("AccessDenied" in line for line in lines):
            raise flows.FlowFailed("send-sms's log shows no AccessDenied for the refused call")
        if any(to in line or to[1:] in line for line in lines):
            raise flows.FlowFailed("send-sms's log carries the recipient's number")
        return f"503 {d.get('type') if isinstance(d, dict) else d}; AccessDenied logged"
    finally:
        iam.put_role_policy(RoleName=fn["role_name"], PolicyName=policy["name"],
                            PolicyDocument=json.dumps(original))
        harness.functions["send-sms"].restart(fn)


def iam_check(endpoint, stack, out_dir, expected_denials):
    records = get_json(endpoint + "/_herald/record")
    functions = {
        name: {"access_key_id": f["credentials"]["access_key_id"], "role_arn": f["role_arn"],
               "policies": [p["document"] for p in f["policies_real"]]}
        for name, f in stack["functions"].items()
    }
    doc = {"functions": functions, "calls": records, "expected_denials": expected_denials}
    path = out_dir / "iam-input.json"
    path.write_text(json.dumps(doc, indent=1))
    return subprocess.run(["node", str(here / "iam_check.mjs"), str(path),
                           "--allow-unused", str(here / "iam_unused_ok.json")]).returncode


def write_env_files(stack, sim_url, out_dir):
    """For `cargo lambda watch --env-file`: one file per function, `<function>.env`, with the
    environment its function has in the stack, pointed at this stack and the simulator, and the
    credentials of its own role (STS, valid an hour), so that an invoke is refused what that
    role is refused. Mode 0600: they hold session credentials."""
    paths = {}
    for name, fn in stack["functions"].items():
        env = dict(fn["environment"])
        env.update(AWS_ENDPOINT_URL=stack["endpoint"], TWILIO_API_BASE_URL=sim_url,
                   TWILIO_ACCOUNTS_BASE_URL=sim_url, AWS_REGION=stack["region"],
                   AWS_ACCESS_KEY_ID=fn["credentials"]["access_key_id"],
                   AWS_SECRET_ACCESS_KEY=fn["credentials"]["secret_access_key"],
                   AWS_SESSION_TOKEN=fn["credentials"]["session_token"])
        path = out_dir / f"{name}.env"
        path.touch(mode=0o600)
        path.chmod(0o600)
        # Single-quoted: a session token has `+`, `/` and `=`, which dotenv parsers refuse bare.
        if any("'" in str(v) or "\n" in str(v) for v in env.values()):
            raise ValueError(f"{name}'s environment has a value no env file can hold")
        path.write_text("".join(f"{k}='{v}'\n" for k, v in sorted(env.items())))
        paths[name] = path
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(root / "target" / "aws-e2e"))
    ap.add_argument("--keep", action="store_true",
                    help="leave the stack running and write an env file for cargo lambda watch")
    ap.add_argument("--flows", help="run only these flows (comma-separated names), for debugging;"
                    " the negative control and the IAM check still run")
    args = ap.parse_args()
    only = set(args.flows.split(",")) if args.flows else None
    out_dir = pathlib.Path(args.out)
    if (out_dir / "logs").exists():
        shutil.rmtree(out_dir / "logs")  # each run's logs alone
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    procs = []
    harness = None
    try:
        moto, endpoint = start_moto(out_dir)
        procs.append(moto)
        print(f"==> moto on {endpoint}, IAM enforced after {stack_mod.SETUP_CALLS} set-up calls")
        creds = sim_credentials()
        stack = stack_mod.deploy(endpoint, out_dir, {}, secret_value=creds)
        print(f"==> stack {stack['stack_name']} created; moto skipped "
              f"{len(stack['skipped'])} resources:")
        for s in stack["skipped"]:
            print(f"     {s['logical_id']:40} {s['type']:40} played by: {s['played_by']}")
        harness = Harness(stack, out_dir)
        harness.start_gateway()
        sim, sim_url = start_sim(out_dir, stack["http_api"]["base_url"], harness.gateway_url,
                              creds)
        procs.append(sim)
        harness.start_functions(sim_url)
        print(f"==> gateway {harness.gateway_url}, simulator {sim_url}, five functions up")

        def advance(secs):
            post_json(endpoint + "/_herald/clock", {"advance_secs": secs})
        ctx = flows.Context(harness, stack, sim_url, advance)
        results = []
        ok = run_flows(ctx, results, only)
        try:
            detail = negative_control(ctx, harness, stack)
            print(f"  PASS negative_control                   {detail}")
            results.append({"flow": "negative_control", "ok": True, "detail": detail})
        except Exception as e:
            ok = False
            print(f"  FAIL negative_control                   {e}")
            results.append({"flow": "negative_control", "ok": False, "detail": str(e)})
        mid = ctx.noted.get("retried_message")
        if mid:
            problems = logs_query.check((root / "README.md").read_text(),
                                        {f: harness.logs(f) for f in stack["functions"]}, mid)
            for p in problems:
                print(f"  README Logs Insights query: {p}")
            print(f"  {'FAIL' if problems else 'PASS'} readme_logs_query                "
                  f"{'the README query misses lines' if problems else 'finds every line of ' + mid + ' and of its first invocation'}")
            results.append({"flow": "readme_logs_query", "ok": not problems,
                            "detail": "; ".join(problems)})
            ok = ok and not problems
        print("==> resource-level IAM: every recorded call against its role's real policy")
        if iam_check(endpoint, stack, out_dir,
                     [NEGATIVE_CONTROL]) != 0:
            ok = False
        (out_dir / "results.json").write_text(json.dumps(results, indent=1))
        print(f"==> {'all flows passed' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s"
              f" (logs: {out_dir / 'logs'})")
        if args.keep:
            env_files = write_env_files(stack, sim_url, out_dir)
            token_file = out_dir / "caller.jwt"
            token_file.write_text(harness.token("e2e-backend", exp=int(time.time()) + 86400))
            token_file.chmod(0o600)
            print(f"==> kept running. cargo lambda watch --env-file {env_files['send-sms']}\n"
                  f"    (one env file per function, its role's credentials: "
                  f"{', '.join(str(p) for p in env_files.values())})\n"
                  f"    gateway {harness.gateway_url}  moto {endpoint}  simulator {sim_url}\n"
                  f"    a caller's JWT (24 h) is in {token_file}\n"
                  f"    Ctrl-C stops everything.", flush=True)
            # Blocked first, so that both end up here and the finally below stops everything.
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT, signal.SIGTERM])
            signal.sigwait([signal.SIGINT, signal.SIGTERM])
        return 0 if ok else 1
    finally:
        if harness is not None:
            harness.stop()
        for p in procs:
            p.kill()


if __name__ == "__main__":
    sys.exit(main())
