"""Deploys infra/template.yaml into a moto server with IAM enforced, and describes the stack.

    .venv/bin/python scripts/aws_e2e/stack.py deploy --endpoint http://127.0.0.1:PORT --out DIR \
        [--param K=V ...] [--template infra/template.yaml]

Start moto with IAM enforcement after the set-up calls (SETUP_CALLS, printed by
`stack.py setup-calls`):

    INITIAL_NO_AUTH_ACTION_COUNT=3 .venv/bin/python scripts/moto_server.py

Steps (deploy()):
 1. The template is translated as CloudFormation would: every `Fn::Transform AWS::Include` of a
    local file spliced in (if there is one), then samtranslator's transform (what SAM CLI and
    CloudFormation's AWS::Serverless transform run), with a managed-policy loader that needs no
    network. Each function's CodeUri becomes a placeholder zip in a moto S3 bucket (the harness
    runs the binaries itself).
 2. Set-up (the only unauthenticated calls, SETUP_CALLS of them): an IAM user `herald-e2e-admin`
    with an inline `*:*` policy and an access key. Every later call is signed with that key, and
    the deploy fails unless moto refuses a call signed with an unknown key (enforcement is on).
 3. The copy given to moto (template.moto.json): every identity-policy statement's Resource /
    NotResource widened to "*" (moto's IAM check matches resources against the ARN it computes
    for some services and "*" for others, so specific ARNs are refused; point 4 of the issue
    checks resources with a real evaluator, against "policies_real"); each role's trust policy
    also trusts the admin user, so the harness can AssumeRole it as Lambda would. References to
    resources moto cannot create are replaced by their stand-ins' values (the HTTP API's id, the
    secret created through the Secrets Manager API).
 4. CreateStack, poll until CREATE_COMPLETE (deadline), compare with ListStackResources, print
    and record each resource moto did not create, and who plays it.
 5. Read everything back into stack.json (contract: /tmp/herald-brief/stack-json.md).
"""
import argparse
import copy
import hashlib
import io
import json
import os
import pathlib
import re
import sys
import time
import zipfile

import boto3
import botocore.config
import botocore.exceptions
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from intrinsics import Resolver, substitute  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
PARTITION = "aws"
STAGE = "staging"
ADMIN_USER = "herald-e2e-admin"
ADMIN_POLICY = {"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
CODE_BUCKET = "herald-e2e-code"

# moto counts every request that reaches its IAM check (core/authorization.py:
# ActionAuthenticatorMixin.request_count, incremented while it is below
# INITIAL_NO_AUTH_ACTION_COUNT; from then on every request is authenticated and authorized).
# The set-up makes exactly these calls unauthenticated: iam CreateUser, PutUserPolicy,
# CreateAccessKey. Start moto with INITIAL_NO_AUTH_ACTION_COUNT=SETUP_CALLS.
SETUP_CALLS = 3

SIM_ACCOUNT_SID = "AC00000000000000000000000000000000"
DEFAULT_PARAMETERS = {
    "Stage": STAGE,
    "TwilioAccountSid": SIM_ACCOUNT_SID,
    "TwilioFromNumber": "+15005550006",
    "JwtIssuer": "https://issuer.herald.test/",
    "JwtAudience": "herald-e2e",
    "ReserveConcurrency": "false",
}
# The Twilio simulator's credentials (local/twilio-sim defaults). No API key: Herald's REST
# calls use the API key, so the first api-key rotation (credential-rotation, driven by the
# harness) must run before anything is sent; it creates the key with the auth token.
DEFAULT_SECRET_VALUE = {"account_sid": SIM_ACCOUNT_SID, "api_key_sid": "", "api_key_secret": "",
                        "auth_token": "sim-auth-token"}

STACK_DEADLINE_SECS = 60

# Who plays a resource moto skipped, by type prefix.
PLAYED_BY = [
    ("AWS::ApiGatewayV2::", "gateway"),
    ("AWS::Scheduler::", "scheduler"),
    ("AWS::SecretsManager::", "secret"),
    ("AWS::CloudWatch::", "none: moto's CloudFormation cannot create alarms, and the run has no "
                          "CloudWatch metrics to evaluate them; their definitions are in "
                          "template.translated.json"),
]

IDENTITY_POLICY_TYPES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy",
                         "AWS::IAM::UserPolicy", "AWS::IAM::GroupPolicy")


class DeployError(Exception):
    pass


def log(*args):
    print("stack.py:", *args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# 1. Translation
# ---------------------------------------------------------------------------------------------
def load_template(path=TEMPLATE):
    """The SAM template with every AWS::Include of a local file spliced in."""
    from samtranslator.yaml_helper import yaml_parse

    path = pathlib.Path(path)
    return splice_includes(yaml_parse(path.read_text()), path.parent)


def splice_includes(node, base):
    if isinstance(node, dict):
        transform = node.get("Fn::Transform")
        if len(node) == 1 and isinstance(transform, dict) and transform.get("Name") == "AWS::Include":
            location = transform["Parameters"]["Location"]
            if re.match(r"^[a-z0-9]+://", location):
                raise DeployError(f"AWS::Include of a remote location is not supported: {location}")
            included = (base / location).resolve()
            from samtranslator.yaml_helper import yaml_parse
            return splice_includes(yaml_parse(included.read_text()), included.parent)
        return {k: splice_includes(v, base) for k, v in node.items()}
    if isinstance(node, list):
        return [splice_includes(v, base) for v in node]
    return node


class _NoNetworkPolicyLoader:
    """samtranslator asks it for the managed policies' ARNs only when a function names a managed
    policy by name; Herald's roles are written by hand, so an empty map (no IAM call)."""

    def load(self):
        return {}


def translate(sam, parameters, code_locations):
    """CloudFormation's AWS::Serverless transform of `sam`, with each function's CodeUri replaced
    by `code_locations[logical_id]` ({"Bucket", "Key"})."""
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    from samtranslator.translator.transform import transform

    sam = copy.deepcopy(sam)
    for logical_id, res in sam["Resources"].items():
        if res.get("Type") == "AWS::Serverless::Function":
            res.setdefault("Properties", {})["CodeUri"] = code_locations[logical_id]
    return transform(sam, dict(parameters), _NoNetworkPolicyLoader())


def serverless_functions(sam):
    """{logical_id: binary} of the SAM template's functions (Metadata.BuildProperties.Binary)."""
    out = {}
    for logical_id, res in sam["Resources"].items():
        if res.get("Type") == "AWS::Serverless::Function":
            binary = ((res.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
            out[logical_id] = binary or logical_id
    return out


def placeholder_zip(binary):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("bootstrap", date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o755 << 16
        z.writestr(info, f"#!/bin/sh\n# placeholder for {binary}: the harness runs the binary\n")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# 3. The moto copy
# ---------------------------------------------------------------------------------------------
# AWS authorizes these API operations by another action (SendMessageBatch needs
# sqs:SendMessage); moto by the operation's own name. The moto copy grants both.
BATCH_OPERATIONS = {
    "sqs:SendMessage": "sqs:SendMessageBatch",
    "sqs:DeleteMessage": "sqs:DeleteMessageBatch",
    "sqs:ChangeMessageVisibility": "sqs:ChangeMessageVisibilityBatch",
}


def widen_document(doc):
    doc = copy.deepcopy(doc)
    statements = doc.get("Statement", [])
    for st in statements if isinstance(statements, list) else [statements]:
        if "Resource" in st:
            st["Resource"] = "*"
        if "NotResource" in st:
            st["NotResource"] = "*"
        actions = st.get("Action")
        if isinstance(actions, (list, str)):
            actions = actions if isinstance(actions, list) else [actions]
            extra = [BATCH_OPERATIONS[a] for a in actions
                     if a in BATCH_OPERATIONS and BATCH_OPERATIONS[a] not in actions]
            if extra:
                st["Action"] = actions + extra
    return doc


def widen_policies(template):
    """Every identity-policy statement's Resource/NotResource → "*"; actions, effects and
    conditions kept."""
    out = copy.deepcopy(template)
    for res in out["Resources"].values():
        props = res.get("Properties") or {}
        if res["Type"] in ("AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"):
            for pol in props.get("Policies") or []:
                if isinstance(pol, dict) and "PolicyDocument" in pol:
                    pol["PolicyDocument"] = widen_document(pol["PolicyDocument"])
        elif res["Type"] in IDENTITY_POLICY_TYPES and "PolicyDocument" in props:
            props["PolicyDocument"] = widen_document(props["PolicyDocument"])
    return out


def trust_admin(template, admin_arn):
    """Adds the admin user as a principal of every role's trust policy statement that allows
    sts:AssumeRole, so the harness can assume each role as Lambda would. (moto's trust check of
    a principal with only `Service` crashes on `principal in None`; with `AWS` present it
    compares the caller's ARN.)"""
    out = copy.deepcopy(template)
    for res in out["Resources"].values():
        if res["Type"] != "AWS::IAM::Role":
            continue
        doc = res["Properties"].get("AssumeRolePolicyDocument") or {}
        statements = doc.get("Statement", [])
        for st in statements if isinstance(statements, list) else [statements]:
            actions = st.get("Action", [])
            actions = actions if isinstance(actions, list) else [actions]
            if st.get("Effect") == "Allow" and "sts:AssumeRole" in actions:
                principal = st.setdefault("Principal", {})
                if isinstance(principal, dict):
                    aws = principal.get("AWS")
                    aws = [] if aws is None else aws if isinstance(aws, list) else [aws]
                    principal["AWS"] = aws + [admin_arn] if aws else admin_arn
    return out


def moto_quirks(template):
    """Rewrites that moto's CloudFormation needs and CloudFormation does not; each is noted."""
    out = copy.deepcopy(template)
    notes = []
    for lid, res in out["Resources"].items():
        props = res.get("Properties") or {}
        if res["Type"] == "AWS::KMS::Key" and isinstance(props.get("Tags"), list):
            # moto passes the CloudFormation tags ({Key, Value}) to its KMS API, which wants
            # {TagKey, TagValue}, and fails with KeyError 'TagKey'.
            props["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} if "Key" in t else t
                             for t in props["Tags"]]
            notes.append(f"{lid}: KMS key tags given to moto as TagKey/TagValue")
        if res["Type"] in ("AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"):
            # moto's Role stores each inline PolicyDocument object as given (a dict), then its
            # IAM check json.loads it (500 for every call with the role's credentials) and
            # GetRolePolicy returns its Python repr: hand it a JSON string (resolved first).
            for pol in props.get("Policies") or []:
                if isinstance(pol, dict) and isinstance(pol.get("PolicyDocument"), dict):
                    pol["PolicyDocument"] = {"Fn::ToJsonString": pol["PolicyDocument"]}
                    notes.append(f"{lid}: inline policy {pol.get('PolicyName')} given to moto "
                                 "as a JSON string")
        if res["Type"] == "AWS::KMS::Key" and isinstance(props.get("KeyPolicy"), dict):
            # moto stores the CloudFormation KeyPolicy object as is; its KMS API then fails
            # (500) on json.loads of it in DescribeKey, Encrypt, GenerateDataKey, ...
            props["KeyPolicy"] = json.dumps(props["KeyPolicy"])
            notes.append(f"{lid}: KMS key policy given to moto as a JSON string")
    return out, notes


def moto_supports(resource_type):
    """Whether moto's CloudFormation creates this type (the moto installed here, which is the
    one scripts/moto_server.py serves); ListStackResources confirms it after CreateStack."""
    import logging
    import warnings

    from moto.cloudformation.parsing import resource_class_from_type

    logger = logging.getLogger("moto.cloudformation.parsing")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return resource_class_from_type(resource_type) is not None
    finally:
        logger.setLevel(level)


def references(node, names):
    """The logical ids of `names` that `node` refers to (Ref, GetAtt, ${X} in Fn::Sub)."""
    found = set()

    def walk(n):
        if isinstance(n, list):
            for v in n:
                walk(v)
        elif isinstance(n, dict):
            for k, v in n.items():
                if k == "Ref" and isinstance(v, str) and v in names:
                    found.add(v)
                elif k == "Fn::GetAtt":
                    name = v.split(".", 1)[0] if isinstance(v, str) else v[0]
                    if name in names:
                        found.add(name)
                elif k == "Fn::Sub":
                    text, variables = (v, {}) if isinstance(v, str) else v
                    for m in re.finditer(r"\$\{([^}!][^}]*)\}", text):
                        name = m.group(1).split(".", 1)[0]
                        if name in names and m.group(1) not in variables:
                            found.add(name)
                    walk(variables)
                else:
                    walk(v)

    walk(node)
    return found


def api_id_for(stack_name):
    """An API Gateway id of the real form (10 lowercase alphanumerics), deterministic."""
    digest = int(hashlib.sha256(f"{ACCOUNT}/{REGION}/{stack_name}/HttpApi".encode()).hexdigest(), 16)
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(10):
        digest, i = divmod(digest, 36)
        out += alphabet[i]
    return out


# ---------------------------------------------------------------------------------------------
# AWS clients
# ---------------------------------------------------------------------------------------------
def _sign_content_sha256(request, **_):
    """moto quirk: for a request with neither body nor query string (Lambda's GETs and
    DELETEs), moto recomputes the SigV4 signature over a body made of the request's *headers*
    (BaseResponse.setup_class: `if not querystring: querystring.update(headers)`), so the
    signature never matches (SignatureDoesNotMatch). botocore's canonical request takes the
    payload hash from a signed X-Amz-Content-SHA256 header when there is one, and so does
    moto's recomputation: sending that header makes both agree."""
    if "X-Amz-Content-SHA256" in request.headers:
        return
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode()
    if isinstance(body, (bytes, bytearray)):
        request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()


def moto_session(key_id, secret, token=None, region=REGION):
    """A boto3 session whose clients moto's IAM enforcement accepts (see _sign_content_sha256).
    The harness should make its own boto3 clients from this."""
    session = boto3.session.Session(aws_access_key_id=key_id, aws_secret_access_key=secret,
                                    aws_session_token=token, region_name=region)
    session.events.register("before-sign", _sign_content_sha256)
    return session


class Aws:
    def __init__(self, endpoint, key_id, secret, token=None):
        self.session = moto_session(key_id, secret, token)
        self.endpoint = endpoint
        self.config = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"},
                                             connect_timeout=5, read_timeout=30)
        self._clients = {}

    def __call__(self, service):
        if service not in self._clients:
            self._clients[service] = self.session.client(service, endpoint_url=self.endpoint,
                                                         config=self.config)
        return self._clients[service]


def error_code(e):
    return e.response.get("Error", {}).get("Code", "")


def setup_admin(endpoint):
    """The SETUP_CALLS unauthenticated calls: the admin user, its `*:*` policy, its key."""
    anon = Aws(endpoint, "AKIASETUPSETUPSETUP0", "setup")
    iam = anon("iam")
    iam.create_user(UserName=ADMIN_USER)
    iam.put_user_policy(UserName=ADMIN_USER, PolicyName="AdministratorAccess",
                        PolicyDocument=json.dumps(ADMIN_POLICY))
    key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
    return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}


def check_enforced(endpoint, admin):
    """IAM enforcement must be on: an unknown key is refused, the admin's key is accepted."""
    stranger = Aws(endpoint, "AKIAUNKNOWNUNKNOWN00", "unknown")
    try:
        stranger("sqs").list_queues()
    except botocore.exceptions.ClientError as e:
        log(f"IAM enforcement on: an unknown key is refused ({error_code(e)})")
    else:
        raise DeployError("moto accepted a call signed with an unknown access key: IAM "
                          f"enforcement is off (start moto with INITIAL_NO_AUTH_ACTION_COUNT="
                          f"{SETUP_CALLS})")
    ident = Aws(endpoint, admin["access_key_id"], admin["secret_access_key"])("sts").get_caller_identity()
    if not ident["Arn"].endswith(f":user/{ADMIN_USER}"):
        raise DeployError(f"the admin key is not the admin: {ident['Arn']}")
    return ident["Arn"]


# ---------------------------------------------------------------------------------------------
# Physical ids → Ref / GetAtt values
# ---------------------------------------------------------------------------------------------
def physical_values(aws, resources):
    """{logical_id: {"ref", "attrs"}} for every resource moto created."""
    out = {}
    for r in resources:
        lid, typ, pid = r["LogicalResourceId"], r["ResourceType"], r["PhysicalResourceId"]
        ref, attrs = pid, {}
        if typ == "AWS::DynamoDB::Table":
            t = aws("dynamodb").describe_table(TableName=pid)["Table"]
            attrs = {"Arn": t["TableArn"]}
            if t.get("LatestStreamArn"):
                attrs["StreamArn"] = t["LatestStreamArn"]
        elif typ == "AWS::SQS::Queue":
            url = pid if pid.startswith("http") else aws("sqs").get_queue_url(QueueName=pid)["QueueUrl"]
            a = aws("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
            ref = url
            attrs = {"Arn": a["QueueArn"], "QueueName": a["QueueArn"].rsplit(":", 1)[1], "QueueUrl": url}
        elif typ == "AWS::KMS::Key":
            k = aws("kms").describe_key(KeyId=pid)["KeyMetadata"]
            ref, attrs = k["KeyId"], {"Arn": k["Arn"], "KeyId": k["KeyId"]}
        elif typ == "AWS::Logs::LogGroup":
            attrs = {"Arn": f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{pid}:*"}
        elif typ == "AWS::IAM::Role":
            name = pid.rsplit("/", 1)[-1]
            role = aws("iam").get_role(RoleName=name)["Role"]
            ref, attrs = name, {"Arn": role["Arn"], "RoleId": role["RoleId"]}
        elif typ == "AWS::Lambda::Function":
            name = pid.rsplit(":", 1)[-1] if pid.startswith("arn:") else pid
            f = aws("lambda").get_function_configuration(FunctionName=name)
            ref, attrs = name, {"Arn": f["FunctionArn"]}
        elif typ == "AWS::SNS::Topic":
            attrs = {"TopicArn": pid, "TopicName": pid.rsplit(":", 1)[1]}
        out[lid] = {"ref": ref, "attrs": attrs, "type": typ}
    return out


# ---------------------------------------------------------------------------------------------
# deploy
# ---------------------------------------------------------------------------------------------
def parse_params(pairs):
    out = {}
    for p in pairs or []:
        k, sep, v = p.partition("=")
        if not sep:
            raise SystemExit(f"--param wants K=V, got {p!r}")
        out[k] = v
    return out


def deploy(endpoint, out_dir, parameters=None, template_path=TEMPLATE, stack_name=None,
           secret_value=None, played_by=None):
    """Deploys the template into the moto server at `endpoint` (started with
    INITIAL_NO_AUTH_ACTION_COUNT=SETUP_CALLS and no calls made yet), writes and returns
    stack.json. `played_by` overrides PLAYED_BY ({type prefix: who})."""
    started = time.monotonic()
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = dict(DEFAULT_PARAMETERS)
    params.update(parameters or {})
    stage = params["Stage"]
    stack_name = stack_name or f"herald-{stage}"
    roles_played = list((played_by or {}).items()) + PLAYED_BY

    # -- 1. translate ---------------------------------------------------------------------
    sam = load_template(template_path)
    binaries = serverless_functions(sam)
    code = {lid: {"Bucket": CODE_BUCKET, "Key": f"{binaries[lid]}.zip"} for lid in binaries}
    translated = translate(sam, params, code)
    (out_dir / "template.translated.json").write_text(json.dumps(translated, indent=1))
    resources = translated["Resources"]
    r0 = Resolver(translated, params, {}, REGION, ACCOUNT, PARTITION, stack_name)
    present = {lid for lid in resources if r0.resource_exists(lid)}

    # -- 2. set-up, then only the admin --------------------------------------------------
    admin = setup_admin(endpoint)
    admin_arn = check_enforced(endpoint, admin)
    aws = Aws(endpoint, admin["access_key_id"], admin["secret_access_key"])

    aws("s3").create_bucket(Bucket=CODE_BUCKET)
    for lid, binary in binaries.items():
        aws("s3").put_object(Bucket=CODE_BUCKET, Key=code[lid]["Key"], Body=placeholder_zip(binary))

    # -- stand-ins for what moto cannot create -------------------------------------------
    unsupported = {lid for lid in present if not moto_supports(resources[lid]["Type"])}
    standins, notes = {}, []
    secret_info = None
    for lid in sorted(unsupported):
        typ = resources[lid]["Type"]
        if typ == "AWS::ApiGatewayV2::Api":
            api_id = api_id_for(stack_name)
            standins[lid] = {"ref": api_id, "attrs": {
                "ApiId": api_id,
                "ApiEndpoint": f"https://{api_id}.execute-api.{REGION}.amazonaws.com"}}
            notes.append(f"{lid}: moto cannot create {typ}; Ref {lid} resolved to the generated "
                         f"api id {api_id} before CreateStack")
        elif typ == "AWS::SecretsManager::Secret":
            props = r0.resolve(resources[lid].get("Properties") or {})
            value = secret_value if secret_value is not None else DEFAULT_SECRET_VALUE
            kwargs = {"Name": props["Name"], "SecretString": json.dumps(value)}
            if props.get("Description"):
                kwargs["Description"] = props["Description"]
            if props.get("KmsKeyId"):
                raise DeployError(f"{lid}: a KmsKeyId on the secret is not supported yet")
            if props.get("Tags"):
                kwargs["Tags"] = props["Tags"]
            created = aws("secretsmanager").create_secret(**kwargs)
            standins[lid] = {"ref": created["ARN"], "attrs": {"Id": created["ARN"]}}
            secret_info = {"logical_id": lid, "name": created["Name"], "arn": created["ARN"]}
            notes.append(f"{lid}: moto cannot create {typ}; created through the Secrets Manager "
                         f"API (the simulator's credentials), Ref {lid} resolved to its ARN")
    for lid in sorted(unsupported - set(standins)):
        users = sorted(u for u in present - unsupported
                       if lid in references(resources[u], unsupported - set(standins)))
        if users:
            raise DeployError(f"{lid} ({resources[lid]['Type']}) cannot be created by moto and has "
                              f"no stand-in, but {users} refer to it")

    moto_template = trust_admin(widen_policies(translated), admin_arn)
    moto_template = substitute(moto_template, standins)
    moto_template, quirk_notes = moto_quirks(moto_template)
    notes += quirk_notes
    for lid in unsupported:
        # moto would skip them anyway; leaving them out keeps its DependsOn ordering simple.
        moto_template["Resources"].pop(lid)
    for res in moto_template["Resources"].values():
        deps = res.get("DependsOn")
        if deps:
            deps = [deps] if isinstance(deps, str) else deps
            kept = [d for d in deps if d not in unsupported]
            if kept:
                res["DependsOn"] = kept
            else:
                res.pop("DependsOn")
    moto_template.get("Outputs", {}).clear()  # read back from the resources instead
    (out_dir / "template.moto.json").write_text(json.dumps(moto_template, indent=1))

    # -- 3. CreateStack --------------------------------------------------------------------
    cfn = aws("cloudformation")
    declared = moto_template.get("Parameters") or {}
    try:
        # moto creates the resources inside CreateStack; a resource it fails on is a 500 here.
        cfn.create_stack(StackName=stack_name, TemplateBody=json.dumps(moto_template),
                         Parameters=[{"ParameterKey": k, "ParameterValue": str(v)}
                                     for k, v in params.items() if k in declared],
                         Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM",
                                       "CAPABILITY_AUTO_EXPAND"])
    except (botocore.exceptions.ClientError, botocore.exceptions.ResponseParserError) as e:
        events = ""
        try:
            evs = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
            events = "\n".join(f"  {x.get('LogicalResourceId')} {x.get('ResourceType')} "
                               f"{x.get('ResourceStatus')} {x.get('ResourceStatusReason', '')}"
                               for x in evs)
        except Exception:  # noqa: BLE001 - the stack may not exist at all
            pass
        raise DeployError(f"CreateStack {stack_name} failed in moto (its stderr has the "
                          f"traceback): {str(e)[:500]}\n{events}") from e
    deadline = time.monotonic() + STACK_DEADLINE_SECS
    while True:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            break
        if not status.endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
            lines = [f"  {e.get('LogicalResourceId')} {e.get('ResourceType')} "
                     f"{e.get('ResourceStatus')} {e.get('ResourceStatusReason', '')}" for e in events]
            raise DeployError(f"stack {stack_name}: {status}"
                              f"{' (deadline passed)' if status.endswith('_IN_PROGRESS') else ''}\n"
                              + "\n".join(lines))
        time.sleep(0.2)  # polling an external process, with a deadline

    # -- 4. skipped resources --------------------------------------------------------------
    listed = []
    token = None
    while True:
        page = cfn.list_stack_resources(StackName=stack_name, **({"NextToken": token} if token else {}))
        listed += page["StackResourceSummaries"]
        token = page.get("NextToken")
        if not token:
            break
    created_ids = {r["LogicalResourceId"] for r in listed}
    skipped = []
    for lid in sorted(present - created_ids):
        typ = resources[lid]["Type"]
        who = next((w for prefix, w in roles_played if typ.startswith(prefix)),
                   f"none: moto's CloudFormation does not create {typ}")
        skipped.append({"logical_id": lid, "type": typ, "played_by": who})
        log(f"skipped by moto: {lid} ({typ}) -> played by {who}")
    for n in notes:
        log(n)

    # -- 5. read back ----------------------------------------------------------------------
    physical = physical_values(aws, listed)
    physical.update(standins)
    resolver = Resolver(translated, params, physical, REGION, ACCOUNT, PARTITION, stack_name,
                        stack["StackId"])
    functions, by_name, by_arn = read_functions(aws, translated, resolver, physical, binaries)
    result = {
        "endpoint": endpoint, "region": REGION, "account": ACCOUNT, "partition": PARTITION,
        "stack_name": stack_name, "stack_id": stack["StackId"], "stage": stage,
        "parameters": {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])},
        "admin": admin,
        "skipped": skipped,
        "notes": notes,
        "functions": functions,
        "event_source_mappings": read_esms(aws, functions, by_arn),
        "http_api": read_http_api(translated, resolver, physical, by_name),
        "schedules": read_schedules(translated, resolver, present, by_arn),
        "secret": read_secret(translated, resolver, present, secret_info, by_arn, physical),
    }
    result["deploy_seconds"] = round(time.monotonic() - started, 2)
    (out_dir / "stack.json").write_text(json.dumps(result, indent=1))
    log(f"stack {stack_name} deployed in {result['deploy_seconds']} s -> {out_dir / 'stack.json'}")
    return result


def read_functions(aws, translated, resolver, physical, binaries):
    lam, iam, sts = aws("lambda"), aws("iam"), aws("sts")
    functions, by_name, by_arn = {}, {}, {}
    for lid, res in translated["Resources"].items():
        if res["Type"] != "AWS::Lambda::Function" or lid not in physical:
            continue
        binary = binaries.get(lid, lid)
        name = physical[lid]["ref"]
        cfg = lam.get_function_configuration(FunctionName=name)
        props = resolver.resolve(res.get("Properties") or {})
        conc = lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
        want = props.get("ReservedConcurrentExecutions")
        if want is not None and conc != int(want):
            # moto's CloudFormation ignores the property: set it as CloudFormation would.
            lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=int(want))
            conc = lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
            log(f"{lid}: moto did not apply ReservedConcurrentExecutions; set it to {want}")
        logging_config = cfg.get("LoggingConfig") or {}
        template_logging = props.get("LoggingConfig") or {}
        role_arn = cfg["Role"]
        role_name = role_arn.rsplit("/", 1)[-1]
        creds = sts.assume_role(RoleArn=role_arn, RoleSessionName=name[:64],
                                DurationSeconds=3600)["Credentials"]
        policies = []
        for pname in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
            doc = iam.get_role_policy(RoleName=role_name, PolicyName=pname)["PolicyDocument"]
            policies.append({"name": pname, "document": json.loads(doc) if isinstance(doc, str) else doc})
        role_lid = next((l for l, p in physical.items()
                         if p.get("type") == "AWS::IAM::Role" and p["ref"] == role_name), None)
        policies_real = []
        if role_lid:
            role_props = resolver.resolve(translated["Resources"][role_lid].get("Properties") or {})
            policies_real = [{"name": p["PolicyName"], "document": p["PolicyDocument"]}
                             for p in role_props.get("Policies") or []]
        functions[binary] = {
            "logical_id": lid,
            "function_name": cfg["FunctionName"],
            "function_arn": cfg["FunctionArn"],
            "role_arn": role_arn, "role_name": role_name, "role_logical_id": role_lid,
            "timeout": cfg.get("Timeout"), "memory_size": cfg.get("MemorySize"),
            # moto's CloudFormation ignores Architectures (always x86_64): the template's.
            "architectures": props.get("Architectures") or cfg.get("Architectures"),
            "runtime": cfg.get("Runtime"),
            "handler": cfg.get("Handler"),
            "reserved_concurrency": conc,
            # moto's GetFunctionConfiguration returns LoggingConfig only when it was set through
            # the Lambda API; else the translated template's (resolved) one.
            "log_group": logging_config.get("LogGroup") or template_logging.get("LogGroup")
            or f"/aws/lambda/{cfg['FunctionName']}",
            "log_format": logging_config.get("LogFormat") or template_logging.get("LogFormat") or "Text",
            "logging_config": logging_config or template_logging,
            "environment": (cfg.get("Environment") or {}).get("Variables") or {},
            "credentials": {"access_key_id": creds["AccessKeyId"],
                            "secret_access_key": creds["SecretAccessKey"],
                            "session_token": creds["SessionToken"]},
            "policies": policies,
            "policies_real": policies_real,
        }
        by_name[cfg["FunctionName"]] = binary
        by_arn[cfg["FunctionArn"]] = binary
    return functions, by_name, by_arn


def read_esms(aws, functions, by_arn):
    lam, sqs = aws("lambda"), aws("sqs")
    out = []
    for binary, f in functions.items():
        for m in lam.list_event_source_mappings(FunctionName=f["function_name"])["EventSourceMappings"]:
            arn = m["EventSourceArn"]
            if ":sqs:" not in arn:
                continue
            queue_name = arn.rsplit(":", 1)[1]
            url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
            a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            redrive = None
            if a.get("RedrivePolicy"):
                rp = json.loads(a["RedrivePolicy"])
                dlq = rp["deadLetterTargetArn"]
                redrive = {"dead_letter_arn": dlq,
                           "dead_letter_url": sqs.get_queue_url(QueueName=dlq.rsplit(":", 1)[1])["QueueUrl"],
                           "max_receive_count": int(rp["maxReceiveCount"])}
            out.append({
                "uuid": m["UUID"], "function": by_arn.get(m["FunctionArn"], binary),
                "queue_arn": arn, "queue_url": url,
                "batch_size": m.get("BatchSize"),
                "maximum_batching_window": m.get("MaximumBatchingWindowInSeconds"),
                "function_response_types": m.get("FunctionResponseTypes") or [],
                "maximum_concurrency": (m.get("ScalingConfig") or {}).get("MaximumConcurrency"),
                "enabled": m.get("State", "Enabled") in ("Enabled", "Enabling", "Creating"),
                "state": m.get("State"),
                "queue": {"visibility_timeout": int(a["VisibilityTimeout"]),
                          "message_retention": int(a["MessageRetentionPeriod"]),
                          "receive_wait": int(a.get("ReceiveMessageWaitTimeSeconds", 0)),
                          "redrive": redrive},
            })
    return out


def _json_pointer(doc, ref):
    if not ref.startswith("#/"):
        raise DeployError(f"only local $ref are supported: {ref}")
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _deref(doc, node):
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        node = _json_pointer(doc, node["$ref"])
        seen += 1
        if seen > 20:
            raise DeployError("$ref cycle")
    return node


def _throttle(settings):
    if not settings:
        return None
    burst, rate = settings.get("ThrottlingBurstLimit"), settings.get("ThrottlingRateLimit")
    if burst is None and rate is None:
        return None
    return {"burst": burst, "rate": rate}


METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace",
           "x-amazon-apigateway-any-method")


def read_http_api(translated, resolver, physical, by_name):
    apis = [lid for lid, r in translated["Resources"].items()
            if r["Type"] == "AWS::ApiGatewayV2::Api" and resolver.resource_exists(lid)]
    if not apis:
        return None
    if len(apis) > 1:
        raise DeployError(f"more than one HTTP API: {apis}")
    lid = apis[0]
    props = resolver.resolve(translated["Resources"][lid]["Properties"])
    body = props.get("Body")
    if body is None:
        raise DeployError(f"{lid}: no Body (BodyS3Location is not supported)")
    api_id = physical[lid]["ref"]
    stages = [resolver.resolve(r["Properties"]) for l, r in translated["Resources"].items()
              if r["Type"] == "AWS::ApiGatewayV2::Stage" and resolver.resource_exists(l)
              and translated["Resources"][l]["Properties"].get("ApiId") == {"Ref": lid}]
    stage = next((s for s in stages if s.get("StageName") == "$default"), stages[0] if stages else {})
    default_throttle = _throttle(stage.get("DefaultRouteSettings"))
    route_settings = stage.get("RouteSettings") or {}

    schemes = (body.get("components") or {}).get("securitySchemes") or {}
    jwt_schemes = {}
    for name, scheme in schemes.items():
        auth = _deref(body, scheme).get("x-amazon-apigateway-authorizer")
        if auth and auth.get("type", "").lower() == "jwt":
            conf = auth.get("jwtConfiguration") or {}
            aud = conf.get("audience") or []
            jwt_schemes[name] = {"name": name, "issuer": conf.get("issuer"),
                                 "audience": aud if isinstance(aud, list) else [aud],
                                 "identity_source": auth.get("identitySource",
                                                             "$request.header.Authorization")}
    routes = []
    for path, item in (body.get("paths") or {}).items():
        item = _deref(body, item)
        for method, op in item.items():
            if method not in METHODS:
                continue
            op = _deref(body, op)
            integ = _deref(body, op.get("x-amazon-apigateway-integration")
                           or item.get("x-amazon-apigateway-integration") or {})
            uri = integ.get("uri", "")
            m = re.search(r":function:([^/:]+)", uri)
            fname = m.group(1) if m else None
            security = op["security"] if "security" in op else body.get("security") or []
            auth = None
            for requirement in security:
                for sname in requirement:
                    if sname in jwt_schemes:
                        auth = "jwt"
            verb = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
            key = f"{verb} {path}"
            routes.append({
                "method": verb, "path": path, "route_key": key,
                "operation_id": op.get("operationId"),
                "function": by_name.get(fname), "function_name": fname,
                "integration_type": integ.get("type"),
                "authorizer": auth,
                "payload_format_version": integ.get("payloadFormatVersion", "2.0"),
                "timeout_ms": int(integ.get("timeoutInMillis", 30000)),
                "throttle": _throttle(route_settings.get(key)) or default_throttle,
            })
    jwt = next(iter(jwt_schemes.values()), None)
    return {
        "logical_id": lid, "api_id": api_id,
        "base_url": f"https://{api_id}.execute-api.{REGION}.amazonaws.com",
        "stage": stage.get("StageName"),
        "disable_execute_api_endpoint": props.get("DisableExecuteApiEndpoint", False),
        "routes": routes, "jwt": jwt, "default_throttle": default_throttle,
        "access_log": stage.get("AccessLogSettings"),
    }


def read_schedules(translated, resolver, present, by_arn):
    out = []
    for lid, r in translated["Resources"].items():
        if r["Type"] != "AWS::Scheduler::Schedule" or lid not in present:
            continue
        p = resolver.resolve(r["Properties"])
        target = p.get("Target") or {}
        out.append({
            "logical_id": lid, "name": p.get("Name") or lid,
            "group": p.get("GroupName", "default"),
            "expression": p.get("ScheduleExpression"),
            "timezone": p.get("ScheduleExpressionTimezone"),
            "flexible_time_window": p.get("FlexibleTimeWindow"),
            "target_arn": target.get("Arn"), "target_function": by_arn.get(target.get("Arn")),
            "target_role_arn": target.get("RoleArn"),
            "input": target.get("Input"),
            "retry_policy": target.get("RetryPolicy"),
            "dead_letter": target.get("DeadLetterConfig"),
            "state": p.get("State", "ENABLED"),
        })
    return out


def read_secret(translated, resolver, present, secret_info, by_arn, physical):
    if secret_info is None:
        secrets = [l for l, r in translated["Resources"].items()
                   if r["Type"] == "AWS::SecretsManager::Secret" and l in present and l in physical]
        if not secrets:
            return None
        lid = secrets[0]
        props = resolver.resolve(translated["Resources"][lid]["Properties"])
        secret_info = {"logical_id": lid, "name": props.get("Name"), "arn": physical[lid]["ref"]}
    info = dict(secret_info, rotation_function=None, rotation_days=None, rotation_logical_id=None)
    for lid, r in translated["Resources"].items():
        if r["Type"] != "AWS::SecretsManager::RotationSchedule" or lid not in present:
            continue
        p = resolver.resolve(r["Properties"])
        if p.get("SecretId") not in (info["arn"], info["name"]):
            continue
        rules = p.get("RotationRules") or {}
        info.update(rotation_logical_id=lid,
                    rotation_function=by_arn.get(p.get("RotationLambdaARN")),
                    rotation_days=rules.get("AutomaticallyAfterDays"),
                    rotation_schedule=rules.get("ScheduleExpression"),
                    rotate_immediately_on_update=p.get("RotateImmediatelyOnUpdate", True))
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("deploy")
    d.add_argument("--endpoint", required=True)
    d.add_argument("--out", required=True)
    d.add_argument("--param", action="append", default=[], metavar="K=V")
    d.add_argument("--template", default=str(TEMPLATE))
    d.add_argument("--stack-name")
    sub.add_parser("setup-calls", help="print SETUP_CALLS (moto's INITIAL_NO_AUTH_ACTION_COUNT)")
    args = ap.parse_args(argv)
    if args.cmd == "setup-calls":
        print(SETUP_CALLS)
        return 0
    try:
        deploy(args.endpoint, args.out, parse_params(args.param), args.template, args.stack_name)
    except DeployError as e:
        log(f"FAILED: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
