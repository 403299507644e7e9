//! Herald's deployment, checked against its code.
//!
//! - The SAM template (`infra/template.yaml`, parsed with serde_yaml: CloudFormation's `!Ref`,
//!   `!GetAtt`, `!Sub` … arrive as tagged values): five arm64 cargo-lambda functions; every
//!   variable `herald::Config` and `herald::adapters::aws::AwsResources` require set on every
//!   function; SQS event sources with partial batch failures; no wildcard in any function role.
//! - Every fixture in `events/` (loaded with `include_str!`) runs through its handler on the
//!   embedded adapters (`herald::test_env::TestEnv`; the rotation steps against the Twilio
//!   simulator and the SQLite secret store) with the outcome it must have; a fixture file no
//!   test loads fails the suite.
//! - Least privilege, from the code: the fixtures run over recording ports, which note every
//!   port method each function calls; the AWS adapters' source tells which AWS action on which
//!   table, index, queue, key or secret each port method makes. Each function's role must grant
//!   exactly that, plus its SQS trigger and its log group, plus the few paths the fixtures do not
//!   reach, each listed below with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use herald::crypto::{DataKey, LookupToken};
use herald::domain::{Attempted, Event, Subject, Verification, VerificationId};
use herald::ports::{
    AWSCURRENT, AWSPENDING, Acquired, Applied, Begun, CallStore, Clock, Decide, DecideVerification,
    EventStore, IdempotencyStore, KeyError, KeyService, Keyring, ManualClock, MessagePage,
    MessageQueries, MessageQuery, MessageStore, OptOutStore, ProtectionStore, Queue, QueueDepth,
    QueueError, RateLimiter, ReceivedJob, Records, SecretError, SecretMetadata, SecretSource,
    SecretValue, SecretVersions, SidClaim, SidOwner, SidOwners, StoreError, StoredResponse,
    TwilioCredentials, VerificationApplied, VerificationStore,
};
use herald::service::Services;
use herald::test_env::TestEnv;
use serde_yaml::Value as Yaml;

const TEMPLATE: &str = include_str!("../template.yaml");

// ------------------------------------------------------------------------------------------
// The template
// ------------------------------------------------------------------------------------------

/// The template's text: `infra/template.yaml`, or the file `HERALD_INFRA_TEMPLATE` names (a
/// control run against another version, e.g. `git show HEAD:infra/template.yaml > /tmp/t.yaml`).
fn template_text() -> String {
    match std::env::var("HERALD_INFRA_TEMPLATE") {
        Ok(path) if !path.is_empty() => std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("HERALD_INFRA_TEMPLATE={path}: {e}")),
        _ => TEMPLATE.to_owned(),
    }
}

fn template() -> Yaml {
    serde_yaml::from_str(&template_text()).expect("infra/template.yaml is YAML")
}

fn resources(t: &Yaml) -> &serde_yaml::Mapping {
    t["Resources"].as_mapping().expect("Resources")
}

/// The five functions: binary name → logical id.
fn functions(t: &Yaml) -> BTreeMap<String, String> {
    resources(t)
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(k, r)| {
            (
                r["Metadata"]["BuildProperties"]["Binary"]
                    .as_str()
                    .expect("Binary")
                    .to_owned(),
                k.as_str().expect("logical id").to_owned(),
            )
        })
        .collect()
}

/// The name a CloudFormation reference points at: `!Ref X`, `!GetAtt X.Arn` → `X`;
/// `!Sub "${X.Arn}/index/i"` → `X/index/i`; a literal stays itself.
fn target(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Tagged(t) => {
            let inner = t.value.as_str().unwrap_or_default();
            match t.tag.to_string().as_str() {
                "!Ref" => inner.to_owned(),
                "!GetAtt" => inner.trim_end_matches(".Arn").to_owned(),
                "!Sub" => inner
                    .replace("${", "")
                    .replace(".Arn}", "")
                    .replace('}', ""),
                other => panic!("unexpected tag {other} in a policy resource"),
            }
        }
        other => panic!("unexpected resource {other:?}"),
    }
}

fn list(v: &Yaml) -> Vec<&Yaml> {
    match v {
        Yaml::Sequence(s) => s.iter().collect(),
        Yaml::Null => vec![],
        other => vec![other],
    }
}

type Grants = BTreeSet<(String, String)>;

/// Every (action, resource) a role's inline policies allow.
fn grants(t: &Yaml, role: &str) -> Grants {
    let mut out = Grants::new();
    for policy in list(&resources(t)[role]["Properties"]["Policies"]) {
        for st in list(&policy["PolicyDocument"]["Statement"]) {
            assert_eq!(st["Effect"], "Allow", "{role}: only Allow statements");
            for a in list(&st["Action"]) {
                for r in list(&st["Resource"]) {
                    out.insert((a.as_str().expect("action").to_owned(), target(r)));
                }
            }
        }
    }
    out
}

fn role_of(t: &Yaml, function: &str) -> String {
    target(&resources(t)[function]["Properties"]["Role"])
}

fn environment(t: &Yaml, function: &str) -> BTreeSet<String> {
    let vars = |v: &Yaml| -> Vec<String> {
        v.as_mapping()
            .map(|m| {
                m.keys()
                    .map(|k| k.as_str().expect("name").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut all: BTreeSet<String> = vars(&t["Globals"]["Function"]["Environment"]["Variables"])
        .into_iter()
        .collect();
    all.extend(vars(
        &resources(t)[function]["Properties"]["Environment"]["Variables"],
    ));
    all
}

const BINARIES: [&str; 5] = [
    "send-sms",
    "place-call",
    "webhook-receiver",
    "retry-processor",
    "credential-rotation",
];

#[test]
fn five_arm64_cargo_lambda_functions() {
    let t = template();
    let fns = functions(&t);
    assert_eq!(
        fns.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BINARIES.into_iter().collect()
    );
    let g = &t["Globals"]["Function"];
    assert_eq!(g["Runtime"], "provided.al2023");
    assert_eq!(g["Architectures"][0], "arm64");
    assert_eq!(g["Handler"], "bootstrap");
    assert_eq!(g["MemorySize"].as_u64(), Some(128));
    for (bin, id) in &fns {
        let f = &resources(&t)[id.as_str()];
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{id}");
        assert_eq!(
            f["Properties"]["CodeUri"].as_str(),
            Some(format!("../functions/{bin}").as_str())
        );
        let timeout = f["Properties"]["Timeout"].as_u64().expect("Timeout");
        assert!((5..=120).contains(&timeout), "{id}: timeout {timeout}");
        // The crate, where it is in this tree, builds a binary of that name.
        let manifest = format!(
            "{}/../functions/{bin}/Cargo.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        if let Ok(text) = std::fs::read_to_string(&manifest) {
            assert!(
                text.contains(&format!("name = \"{bin}\"")),
                "{manifest} builds {bin}"
            );
        }
    }
}

#[test]
fn every_required_variable_is_set_on_every_function() {
    let t = template();
    let required: Vec<&str> = herald::config::REQUIRED_ENV
        .iter()
        .chain(herald::adapters::aws::REQUIRED_ENV)
        .copied()
        .collect();
    assert!(required.len() >= 11);
    for (bin, id) in functions(&t) {
        let env = environment(&t, &id);
        for name in &required {
            assert!(env.contains(*name), "{bin} lacks {name}");
        }
        for group in herald::config::REQUIRED_ONE_OF_ENV {
            // Each member is set under a condition (!If … AWS::NoValue): whichever is given.
            assert!(
                group.iter().all(|n| env.contains(*n)),
                "{bin} lacks one of {group:?}"
            );
        }
    }
    // The sender is set by exactly one of its two parameters.
    let vars = &t["Globals"]["Function"]["Environment"]["Variables"];
    for name in herald::config::REQUIRED_ONE_OF_ENV[0] {
        let v = &vars[*name];
        assert!(
            matches!(v, Yaml::Tagged(tag) if tag.tag == "!If"),
            "{name} is conditional"
        );
    }
}

#[test]
fn no_wildcard_in_any_function_role() {
    let t = template();
    for (bin, id) in functions(&t) {
        let role = role_of(&t, &id);
        let g = grants(&t, &role);
        assert!(!g.is_empty(), "{bin}: role {role} grants nothing");
        for (action, resource) in g {
            assert!(!action.contains('*'), "{bin}: action {action}");
            assert!(!resource.contains('*'), "{bin}: {action} on {resource}");
        }
        let props = &resources(&t)[role.as_str()]["Properties"];
        assert!(
            props["ManagedPolicyArns"].is_null(),
            "{bin}: managed policies"
        );
    }
}

#[test]
fn queues_have_dead_letters_and_partial_batch_failures() {
    let t = template();
    let r = resources(&t);
    for q in ["SendQueue", "RetryQueue"] {
        let p = &r[q]["Properties"];
        let n = p["RedrivePolicy"]["maxReceiveCount"].as_u64().expect(q);
        assert!((2..=10).contains(&n), "{q}: maxReceiveCount {n}");
        let dlq = target(&p["RedrivePolicy"]["deadLetterTargetArn"]);
        assert!(dlq.ends_with("DeadLetterQueue"));
        // A message keeps its first enqueue time in a standard queue's DLQ: the DLQ must keep
        // messages longer than its source, or they expire there at once.
        let kept = |q: &str| {
            r[q]["Properties"]["MessageRetentionPeriod"]
                .as_u64()
                .expect("MessageRetentionPeriod")
        };
        assert!(
            kept(&dlq) > kept(q),
            "{dlq} keeps messages {} s, not longer than {q}'s {} s",
            kept(&dlq),
            kept(q)
        );
    }
    let mut sources = 0;
    for (_, id) in functions(&t) {
        let f = &r[id.as_str()];
        let timeout = f["Properties"]["Timeout"].as_u64().expect("Timeout");
        for (_, ev) in f["Properties"]["Events"].as_mapping().into_iter().flatten() {
            if ev["Type"] != "SQS" {
                continue;
            }
            sources += 1;
            let p = &ev["Properties"];
            assert_eq!(
                p["FunctionResponseTypes"][0], "ReportBatchItemFailures",
                "{id}"
            );
            assert!(
                p["BatchSize"]
                    .as_u64()
                    .is_some_and(|b| (1..=10).contains(&b))
            );
            assert!(p["ScalingConfig"]["MaximumConcurrency"].as_u64() >= Some(2));
            let queue = target(&p["Queue"]);
            let visibility = r[queue.as_str()]["Properties"]["VisibilityTimeout"]
                .as_u64()
                .expect("VisibilityTimeout");
            // AWS's guidance for SQS event sources: at least six times the function's timeout.
            assert!(
                visibility >= 6 * timeout,
                "{queue}: visibility timeout {visibility} s is below 6 x {id}'s {timeout} s"
            );
        }
    }
    assert_eq!(
        sources, 2,
        "send queue → send-sms, retry queue → retry-processor"
    );
}

#[test]
fn secret_rotates_every_90_days_through_credential_rotation() {
    let t = template();
    let r = resources(&t);
    let (_, rotation) = r
        .iter()
        .find(|(_, v)| v["Type"] == "AWS::SecretsManager::RotationSchedule")
        .expect("a rotation schedule");
    let p = &rotation["Properties"];
    assert_eq!(
        target(&p["RotationLambdaARN"]),
        "CredentialRotationFunction"
    );
    assert_eq!(
        p["RotationRules"]["AutomaticallyAfterDays"].as_u64(),
        Some(90)
    );
    assert!(r.values().any(|v| v["Type"] == "AWS::Lambda::Permission"
        && v["Properties"]["Principal"] == "secretsmanager.amazonaws.com"));
    assert_eq!(
        r["HeraldKey"]["Properties"]["EnableKeyRotation"].as_bool(),
        Some(true)
    );
    for table in ["MessagesTable", "EventsTable", "StateTable"] {
        let p = &r[table]["Properties"];
        assert_eq!(
            p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
            Some(true)
        );
        assert_eq!(
            target(&p["SSESpecification"]["KMSMasterKeyId"]),
            "HeraldKey"
        );
    }
    // Events expire; so does the protection state (rate windows, idempotency keys, codes).
    for (table, attribute) in [
        ("EventsTable", herald::adapters::aws::EVENTS_TTL_ATTRIBUTE),
        ("StateTable", herald::adapters::aws::STATE_TTL_ATTRIBUTE),
    ] {
        let ttl = &r[table]["Properties"]["TimeToLiveSpecification"];
        assert_eq!(ttl["AttributeName"].as_str(), Some(attribute), "{table}");
        assert_eq!(ttl["Enabled"].as_bool(), Some(true), "{table}");
    }
}

/// The sources that read environment variables, by function (`*`: every function).
const CONFIG_SOURCES: [(&str, &str); 5] = [
    ("*", include_str!("../../shared/src/config.rs")),
    ("*", include_str!("../../shared/src/protect/config.rs")),
    ("*", include_str!("../../shared/src/adapters/aws/mod.rs")),
    ("*", include_str!("../../shared/src/telemetry.rs")),
    (
        "credential-rotation",
        include_str!("../../functions/credential-rotation/src/lib.rs"),
    ),
];

/// The quoted SCREAMING_SNAKE_CASE names in `src` (variable names, and some other constants).
fn quoted_names(src: &str) -> BTreeSet<String> {
    src.split('"')
        .skip(1)
        .step_by(2)
        .filter(|w| {
            w.len() > 3
                && w.contains('_')
                && w.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_variable_set_on_a_function_is_one_its_code_reads() {
    let t = template();
    for (bin, id) in functions(&t) {
        let read: BTreeSet<String> = CONFIG_SOURCES
            .iter()
            .filter(|(f, _)| *f == "*" || *f == bin)
            .flat_map(|(_, src)| quoted_names(src))
            .collect();
        for name in environment(&t, &id) {
            assert!(
                read.contains(&name),
                "{bin} is given {name}, which its code never reads (a typo, or a leftover)"
            );
        }
    }
}

// ------------------------------------------------------------------------------------------
// What the AWS adapters call, from their source
// ------------------------------------------------------------------------------------------

const DYNAMO: [&str; 4] = [
    include_str!("../../shared/src/adapters/aws/dynamo.rs"),
    include_str!("../../shared/src/adapters/aws/dynamo/calls.rs"),
    include_str!("../../shared/src/adapters/aws/dynamo/protect.rs"),
    include_str!("../../shared/src/adapters/aws/dynamo/sids.rs"),
];
const SQS: &str = include_str!("../../shared/src/adapters/aws/sqs.rs");
const KMS: &str = include_str!("../../shared/src/adapters/aws/kms.rs");
const SECRETS: &str = include_str!("../../shared/src/adapters/aws/secrets.rs");

/// Function bodies by name: from one `fn` line to the next.
fn bodies(sources: &[&str]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for src in sources {
        let mut name: Option<String> = None;
        for line in src.lines() {
            let l = line.trim_start();
            let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let l = l.strip_prefix("async ").unwrap_or(l);
            if let Some(rest) = l.strip_prefix("fn ") {
                let n: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                name = Some(n);
            }
            if let Some(n) = &name {
                let b = out.entry(n.clone()).or_default();
                b.push_str(line);
                b.push('\n');
            }
        }
    }
    out
}

/// A body with the bodies of the `self.helper(` methods it calls appended, and of those they
/// call in turn.
fn with_helpers(all: &BTreeMap<String, String>, name: &str) -> String {
    let body = all
        .get(name)
        .unwrap_or_else(|| panic!("no fn {name} in the AWS adapters"));
    let mut text = body.clone();
    let mut seen = std::collections::BTreeSet::from([name.to_owned()]);
    loop {
        let more: Vec<&String> = all
            .keys()
            .filter(|h| !seen.contains(*h) && text.contains(&format!("self.{h}(")))
            .collect();
        if more.is_empty() {
            return text;
        }
        for h in more {
            seen.insert(h.clone());
            text.push_str(&all[h]);
        }
    }
}

const SDK_ACTIONS: [(&str, &str); 17] = [
    (".get_item()", "dynamodb:GetItem"),
    (".put_item()", "dynamodb:PutItem"),
    (".update_item()", "dynamodb:UpdateItem"),
    (".delete_item()", "dynamodb:DeleteItem"),
    (".query()", "dynamodb:Query"),
    (".send_message()", "sqs:SendMessage"),
    (".send_message_batch()", "sqs:SendMessage"),
    (".get_queue_attributes()", "sqs:GetQueueAttributes"),
    (".receive_message()", "sqs:ReceiveMessage"),
    (".delete_message()", "sqs:DeleteMessage"),
    (
        ".change_message_visibility()",
        "sqs:ChangeMessageVisibility",
    ),
    (".generate_data_key()", "kms:GenerateDataKey"),
    (".decrypt()", "kms:Decrypt"),
    (".get_secret_value()", "secretsmanager:GetSecretValue"),
    (".describe_secret()", "secretsmanager:DescribeSecret"),
    (".put_secret_value()", "secretsmanager:PutSecretValue"),
    (
        ".update_secret_version_stage()",
        "secretsmanager:UpdateSecretVersionStage",
    ),
];

fn sdk_actions(body: &str) -> BTreeSet<&'static str> {
    SDK_ACTIONS
        .iter()
        .filter(|(call, _)| body.contains(call))
        .map(|(_, a)| *a)
        .collect()
}

/// The (action, resource) grants one port call needs on AWS.
fn needs(port: &str, method: &str) -> Grants {
    let mut out = Grants::new();
    match port {
        "messages" | "calls" | "events" | "opt_outs" | "keyring" | "protection" | "sid_owners" => {
            let body = with_helpers(&bodies(&DYNAMO), method);
            let tables: Vec<&str> = [
                ("tables.messages", "MessagesTable"),
                ("tables.events", "EventsTable"),
                ("tables.state", "StateTable"),
            ]
            .into_iter()
            .filter(|(t, _)| body.contains(t))
            .map(|(_, r)| r)
            .collect();
            assert!(!tables.is_empty(), "{port}.{method} names no table");
            for action in sdk_actions(&body) {
                for table in &tables {
                    if action == "dynamodb:Query" {
                        for (constant, index) in [
                            (
                                "MESSAGES_BY_STATUS",
                                herald::adapters::aws::MESSAGES_BY_STATUS,
                            ),
                            (
                                "MESSAGES_BY_CALLER",
                                herald::adapters::aws::MESSAGES_BY_CALLER,
                            ),
                            (
                                "EVENTS_BY_SUBJECT",
                                herald::adapters::aws::EVENTS_BY_SUBJECT,
                            ),
                            (
                                "MESSAGES_IN_DOUBT",
                                herald::adapters::aws::MESSAGES_IN_DOUBT,
                            ),
                        ] {
                            if body.contains(constant) {
                                out.insert((action.into(), format!("{table}/index/{index}")));
                            }
                        }
                    } else {
                        out.insert((action.into(), (*table).into()));
                    }
                }
            }
        }
        "send_queue" | "retry_queue" => {
            let body = with_helpers(&bodies(&[SQS]), method);
            let (queue, dlq) = if port == "send_queue" {
                ("SendQueue", "SendDeadLetterQueue")
            } else {
                ("RetryQueue", "RetryDeadLetterQueue")
            };
            for action in sdk_actions(&body) {
                out.insert((action.into(), queue.into()));
                if body.contains("self.dlq_url") {
                    out.insert((action.into(), dlq.into()));
                }
            }
        }
        "keys" => {
            for action in sdk_actions(&with_helpers(&bodies(&[KMS]), method)) {
                out.insert((action.into(), "HeraldKey".into()));
            }
        }
        "secrets" | "secret_versions" => {
            for action in sdk_actions(&with_helpers(&bodies(&[SECRETS]), method)) {
                out.insert((action.into(), "TwilioSecret".into()));
            }
        }
        other => panic!("unknown port {other}"),
    }
    assert!(!out.is_empty(), "{port}.{method} makes no AWS call?");
    out
}

// ------------------------------------------------------------------------------------------
// Recording ports
// ------------------------------------------------------------------------------------------

type Log = Arc<Mutex<BTreeSet<(&'static str, &'static str)>>>;

struct Rec<T: ?Sized> {
    port: &'static str,
    log: Log,
    inner: Arc<T>,
}

impl<T: ?Sized> Rec<T> {
    fn note(&self, method: &'static str) {
        self.log.lock().expect("log").insert((self.port, method));
    }
}

fn rec<T: ?Sized>(port: &'static str, log: &Log, inner: Arc<T>) -> Arc<Rec<T>> {
    Arc::new(Rec {
        port,
        log: log.clone(),
        inner,
    })
}

#[async_trait]
impl<R: Attempted, T: Records<R> + ?Sized> Records<R> for Rec<T> {
    async fn insert_record(&self, r: &R) -> Result<(), StoreError> {
        self.note("insert_record");
        self.inner.insert_record(r).await
    }
    async fn get_record(&self, id: &R::Id) -> Result<Option<R>, StoreError> {
        self.note("get_record");
        self.inner.get_record(id).await
    }
    async fn update_record(
        &self,
        id: &R::Id,
        decide: &Decide<'_, R>,
    ) -> Result<Applied<R>, StoreError> {
        self.note("update_record");
        self.inner.update_record(id, decide).await
    }
    async fn records_by_status(
        &self,
        status: R::Status,
        created_before_ms: i64,
        limit: u32,
        order: herald::ports::Order,
        after: Option<&herald::ports::SweepCursor>,
    ) -> Result<herald::ports::Page<R>, StoreError> {
        self.note("records_by_status");
        self.inner
            .records_by_status(status, created_before_ms, limit, order, after)
            .await
    }
    async fn records_in_doubt(
        &self,
        token: &herald::crypto::LookupToken,
        until_from_ms: i64,
        limit: u32,
    ) -> Result<Vec<herald::ports::InDoubt>, StoreError> {
        self.note("records_in_doubt");
        self.inner
            .records_in_doubt(token, until_from_ms, limit)
            .await
    }
}

impl MessageStore for Rec<dyn MessageStore> {}

impl CallStore for Rec<dyn CallStore> {}

#[async_trait]
impl EventStore for Rec<dyn EventStore> {
    async fn record_event(&self, e: &Event) -> Result<bool, StoreError> {
        self.note("record_event");
        self.inner.record_event(e).await
    }
    async fn get_event(&self, key: &str) -> Result<Option<Event>, StoreError> {
        self.note("get_event");
        self.inner.get_event(key).await
    }
    async fn events_for(&self, s: &Subject) -> Result<Vec<Event>, StoreError> {
        self.note("events_for");
        self.inner.events_for(s).await
    }
}

#[async_trait]
impl OptOutStore for Rec<dyn OptOutStore> {
    async fn set_opt_out(&self, t: &LookupToken, o: bool, at: i64) -> Result<bool, StoreError> {
        self.note("set_opt_out");
        self.inner.set_opt_out(t, o, at).await
    }
    async fn is_opted_out(&self, t: &LookupToken) -> Result<bool, StoreError> {
        self.note("is_opted_out");
        self.inner.is_opted_out(t).await
    }
}

#[async_trait]
impl Keyring for Rec<dyn Keyring> {
    async fn get_key(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.note("get_key");
        self.inner.get_key(name).await
    }
    async fn put_key_if_absent(&self, name: &str, wrapped: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.note("put_key_if_absent");
        self.inner.put_key_if_absent(name, wrapped).await
    }
}

#[async_trait]
impl KeyService for Rec<dyn KeyService> {
    async fn generate_data_key(&self) -> Result<DataKey, KeyError> {
        self.note("generate_data_key");
        self.inner.generate_data_key().await
    }
    async fn decrypt_data_key(&self, wrapped: &[u8]) -> Result<herald::Secret<[u8; 32]>, KeyError> {
        self.note("decrypt_data_key");
        self.inner.decrypt_data_key(wrapped).await
    }
}

#[async_trait]
impl SecretSource for Rec<dyn SecretSource> {
    async fn current(&self) -> Result<TwilioCredentials, SecretError> {
        self.note("current");
        self.inner.current().await
    }
}

#[async_trait]
impl SecretVersions for Rec<dyn SecretVersions> {
    async fn describe(&self) -> Result<SecretMetadata, SecretError> {
        self.note("describe");
        self.inner.describe().await
    }
    async fn get_by_stage(&self, stage: &str) -> Result<Option<SecretValue>, SecretError> {
        self.note("get_by_stage");
        self.inner.get_by_stage(stage).await
    }
    async fn get_version(&self, version_id: &str) -> Result<Option<SecretValue>, SecretError> {
        self.note("get_version");
        self.inner.get_version(version_id).await
    }
    async fn put_version(
        &self,
        version_id: &str,
        text: &str,
        stages: &[&str],
    ) -> Result<(), SecretError> {
        self.note("put_version");
        self.inner.put_version(version_id, text, stages).await
    }
    async fn move_stage(&self, stage: &str, version_id: &str) -> Result<(), SecretError> {
        self.note("move_stage");
        self.inner.move_stage(stage, version_id).await
    }
    async fn remove_stage(&self, stage: &str, version_id: &str) -> Result<(), SecretError> {
        self.note("remove_stage");
        self.inner.remove_stage(stage, version_id).await
    }
}

#[async_trait]
impl RateLimiter for Rec<dyn ProtectionStore> {
    async fn acquire(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Acquired, StoreError> {
        self.note("acquire");
        self.inner.acquire(key, limit, window_ms, now_ms).await
    }
}

#[async_trait]
impl IdempotencyStore for Rec<dyn ProtectionStore> {
    async fn begin(
        &self,
        key: &str,
        fingerprint: &str,
        now_ms: i64,
        lease_until_ms: i64,
        expires_at_ms: i64,
    ) -> Result<Begun, StoreError> {
        self.note("begin");
        self.inner
            .begin(key, fingerprint, now_ms, lease_until_ms, expires_at_ms)
            .await
    }
    async fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.note("complete");
        self.inner.complete(key, fingerprint, response).await
    }
    async fn release(&self, key: &str, fingerprint: &str) -> Result<(), StoreError> {
        self.note("release");
        self.inner.release(key, fingerprint).await
    }
}

#[async_trait]
impl VerificationStore for Rec<dyn ProtectionStore> {
    async fn insert_verification(&self, v: &Verification) -> Result<(), StoreError> {
        self.note("insert_verification");
        self.inner.insert_verification(v).await
    }
    async fn get_verification(
        &self,
        id: &VerificationId,
    ) -> Result<Option<Verification>, StoreError> {
        self.note("get_verification");
        self.inner.get_verification(id).await
    }
    async fn update_verification(
        &self,
        id: &VerificationId,
        decide: &DecideVerification<'_>,
    ) -> Result<VerificationApplied, StoreError> {
        self.note("update_verification");
        self.inner.update_verification(id, decide).await
    }
}

#[async_trait]
impl MessageQueries for Rec<dyn ProtectionStore> {
    async fn list_messages_by_caller(&self, q: &MessageQuery) -> Result<MessagePage, StoreError> {
        self.note("list_messages_by_caller");
        self.inner.list_messages_by_caller(q).await
    }
}

#[async_trait]
impl SidOwners for Rec<dyn SidOwners> {
    async fn own_twilio_sid(
        &self,
        sid: &str,
        owner: &SidOwner,
        at_ms: i64,
    ) -> Result<SidClaim, StoreError> {
        self.note("own_twilio_sid");
        self.inner.own_twilio_sid(sid, owner, at_ms).await
    }
    async fn twilio_sid_owner(&self, sid: &str) -> Result<Option<SidOwner>, StoreError> {
        self.note("twilio_sid_owner");
        self.inner.twilio_sid_owner(sid).await
    }
}

#[async_trait]
impl Queue for Rec<dyn Queue> {
    async fn send(&self, body: &str, delay: u32) -> Result<String, QueueError> {
        self.note("send");
        self.inner.send(body, delay).await
    }
    async fn send_batch(
        &self,
        jobs: &[(String, u32)],
    ) -> Result<Vec<Result<String, QueueError>>, QueueError> {
        self.note("send_batch");
        self.inner.send_batch(jobs).await
    }
    async fn receive(&self, max: u32, vis: u32) -> Result<Vec<ReceivedJob>, QueueError> {
        self.note("receive");
        self.inner.receive(max, vis).await
    }
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.note("delete");
        self.inner.delete(receipt).await
    }
    async fn change_visibility(&self, receipt: &str, vis: u32) -> Result<(), QueueError> {
        self.note("change_visibility");
        self.inner.change_visibility(receipt, vis).await
    }
    async fn dead_letters(&self, max: u32) -> Result<Vec<ReceivedJob>, QueueError> {
        self.note("dead_letters");
        self.inner.dead_letters(max).await
    }
    async fn redrive(&self) -> Result<u32, QueueError> {
        self.note("redrive");
        self.inner.redrive().await
    }
    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.note("depth");
        self.inner.depth().await
    }
}

/// Services over `env`'s adapters, every port recording into `log`.
fn recording(env: &TestEnv, log: &Log) -> Arc<Services> {
    env.services_with(|mut a| {
        a.messages = rec("messages", log, a.messages);
        a.calls = rec("calls", log, a.calls);
        a.events = rec("events", log, a.events);
        a.opt_outs = rec("opt_outs", log, a.opt_outs);
        a.keyring = rec("keyring", log, a.keyring);
        a.keys = rec("keys", log, a.keys);
        a.secrets = rec("secrets", log, a.secrets);
        a.send_queue = rec("send_queue", log, a.send_queue);
        a.retry_queue = rec("retry_queue", log, a.retry_queue);
        a.protection = rec("protection", log, a.protection);
        a.sid_owners = rec("sid_owners", log, a.sid_owners);
        a
    })
}

// ------------------------------------------------------------------------------------------
// The fixtures
// ------------------------------------------------------------------------------------------

/// What a fixture must come to.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// An API Gateway request answered with this status.
    Status(u16),
    /// An SQS batch with this many items reported failed.
    BatchFailures(usize),
    /// The scheduled sweep runs.
    Sweep,
    /// A rotation step that ends with this outcome.
    Rotation(credential_rotation::Outcome),
}

struct Fixture {
    function: &'static str,
    name: &'static str,
    text: &'static str,
    expect: Expect,
}

macro_rules! fixture {
    ($function:literal, $name:literal, $expect:expr) => {
        Fixture {
            function: $function,
            name: $name,
            text: include_str!(concat!("../../events/", $function, "/", $name, ".json")),
            expect: $expect,
        }
    };
}

fn fixtures() -> Vec<Fixture> {
    use Expect::*;
    use credential_rotation::Outcome::{Changed, Unchanged};
    vec![
        fixture!("send-sms", "post-message", Status(201)),
        fixture!("send-sms", "post-message-template", Status(201)),
        fixture!("send-sms", "post-message-invalid", Status(422)),
        fixture!("send-sms", "post-batch", Status(202)),
        fixture!("send-sms", "get-message", Status(404)),
        fixture!("send-sms", "get-health", Status(200)),
        fixture!("send-sms", "get-health-details", Status(200)),
        // A job for a message that is not (or no longer) waiting is done; "not a job" fails.
        fixture!("send-sms", "sqs-send-queue", BatchFailures(1)),
        fixture!("place-call", "post-call", Status(201)),
        fixture!("place-call", "post-call-invalid", Status(422)),
        fixture!("place-call", "get-call", Status(404)),
        fixture!("webhook-receiver", "message-status", Status(200)),
        fixture!("webhook-receiver", "message-status-forged", Status(403)),
        fixture!("webhook-receiver", "call-status", Status(200)),
        fixture!("webhook-receiver", "voice-gather", Status(200)),
        fixture!("webhook-receiver", "inbound-sms-stop", Status(200)),
        // Message and call jobs nobody waits for are done; the unknown kind fails.
        fixture!("retry-processor", "sqs-retry-queue", BatchFailures(1)),
        fixture!("retry-processor", "scheduled-sweep", Sweep),
        // In order, one rotation: a new API key stored pending, nothing to set, the key proven
        // at Twilio, then made current.
        fixture!("credential-rotation", "createSecret", Rotation(Changed)),
        fixture!("credential-rotation", "setSecret", Rotation(Unchanged)),
        fixture!("credential-rotation", "testSecret", Rotation(Unchanged)),
        fixture!("credential-rotation", "finishSecret", Rotation(Changed)),
    ]
}

fn status_of(v: &serde_json::Value) -> u16 {
    v["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .expect("statusCode")
}

/// Runs one fixture through its handler; returns what came out, for the assertion message.
async fn run(svc: &Services, f: &Fixture) -> (bool, String) {
    let value: serde_json::Value = serde_json::from_str(f.text).expect("fixture is JSON");
    match f.expect {
        Expect::Status(want) => {
            let got = if f.function == "webhook-receiver" {
                let ev: webhook_receiver::request::ApiEvent =
                    serde_json::from_value(value).expect("an API Gateway event");
                status_of(&webhook_receiver::handle_event(svc, ev).await)
            } else {
                let req = lambda_http::request::from_str(f.text).expect("an API Gateway event");
                let resp = match f.function {
                    "send-sms" => send_sms::handle(svc, req).await,
                    "place-call" => place_call::handle(svc, req).await,
                    other => panic!("no HTTP handler for {other}"),
                }
                .expect("handler answers");
                let (status, body) = herald::test_env::read(&resp);
                if status != want {
                    return (false, format!("{status} {body}"));
                }
                status
            };
            (got == want, format!("status {got}"))
        }
        Expect::BatchFailures(want) => {
            let ev: aws_lambda_events::sqs::SqsEvent =
                serde_json::from_value(value).expect("an SQS event");
            let resp = match f.function {
                "send-sms" => send_sms::handle_sqs(svc, ev).await,
                "retry-processor" => retry_processor::handle(svc, ev).await,
                other => panic!("no SQS handler for {other}"),
            }
            .expect("the batch is handled");
            let got = resp.batch_item_failures.len();
            (got == want, format!("{got} failures"))
        }
        Expect::Sweep => {
            // main.rs sweeps on any event without Records.
            assert!(value.get("Records").is_none());
            let swept = retry_processor::sweep(svc).await;
            (swept.is_ok(), format!("{swept:?}"))
        }
        Expect::Rotation(_) => panic!("rotation fixtures run in run_rotation"),
    }
}

/// The credentials the rotation fixtures start from (test values, never real).
fn rotation_credentials() -> TwilioCredentials {
    TwilioCredentials {
        account_sid: format!("AC{}", "e5".repeat(16)),
        api_key_sid: format!("SK{}", "f6".repeat(16)),
        api_key_secret: herald::Secret::new("fixture-key-secret".into()),
        auth_token: herald::Secret::new("fixture-auth-token".into()),
        previous_auth_token: None,
        previous_valid_until_ms: None,
    }
}

/// Runs the rotation fixtures, in order, through `credential_rotation::handle` against the
/// Twilio simulator and the SQLite secret store (the secret as Secrets Manager leaves it when it
/// invokes `createSecret`: rotation on, the token staged `AWSPENDING` without a value), over a
/// recording secret; returns the secret calls made.
async fn run_rotation(all: &[Fixture]) -> BTreeSet<(&'static str, &'static str)> {
    let creds = rotation_credentials();
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let mut cfg =
        twilio_sim::SimConfig::new(creds.account_sid.clone(), creds.auth_token.expose().clone());
    cfg.api_keys = vec![(
        creds.api_key_sid.clone(),
        creds.api_key_secret.expose().clone(),
    )];
    cfg.callback_mode = twilio_sim::CallbackMode::Manual;
    let sim = twilio_sim::Simulator::start(cfg).await.expect("simulator");
    let store = herald::adapters::embedded::SqliteSecretStore::in_memory(
        "herald/prod/twilio",
        clock.clone() as Arc<dyn Clock>,
    )
    .expect("secret store");
    store
        .create_if_absent(
            "initial-0000000000000000000000000000",
            &serde_json::to_string(&creds).expect("JSON"),
        )
        .await
        .expect("initial version");
    store.set_rotation_enabled(true).await.expect("rotation on");
    let rotation: Vec<&Fixture> = all
        .iter()
        .filter(|f| f.function == "credential-rotation")
        .collect();
    let event = |f: &Fixture| {
        serde_json::from_str::<aws_lambda_events::secretsmanager::SecretsManagerSecretRotationEvent>(
            f.text,
        )
        .expect("a rotation event")
    };
    let token = event(rotation[0]).client_request_token;
    store.start_rotation(&token).await.expect("pending version");
    let config = credential_rotation::RotationConfig {
        api_base_url: sim.base_url(),
        accounts_base_url: sim.base_url(),
        mode: credential_rotation::RotationMode::ApiKey,
        grace_ms: 60_000,
        request_timeout: std::time::Duration::from_secs(5),
    };
    let rotator =
        credential_rotation::Rotator::new(&config, clock as Arc<dyn Clock>).expect("rotator");
    let log: Log = Arc::default();
    let store: Arc<dyn SecretVersions> = Arc::new(store);
    let secret = rec("secret_versions", &log, store.clone());
    for f in rotation {
        let ev = event(f);
        assert_eq!(
            ev.step, f.name,
            "events/credential-rotation/{}.json",
            f.name
        );
        assert_eq!(ev.client_request_token, token, "one rotation");
        let got = credential_rotation::handle(&rotator, secret.as_ref(), &ev).await;
        let Expect::Rotation(want) = f.expect else {
            panic!("{} is a rotation fixture", f.name)
        };
        assert!(
            matches!(&got, Ok(o) if *o == want),
            "events/credential-rotation/{}.json: expected {want:?}, got {got:?}",
            f.name
        );
    }
    let meta = store.describe().await.expect("describe");
    assert!(
        meta.has_stage(&token, AWSCURRENT),
        "the rotation made its version current"
    );
    assert_eq!(meta.version_with(AWSPENDING), None);
    let current = store
        .get_by_stage(AWSCURRENT)
        .await
        .expect("read")
        .expect("a current version");
    let now: TwilioCredentials = serde_json::from_str(current.text.expose()).expect("credentials");
    assert_ne!(
        now.api_key_sid, creds.api_key_sid,
        "a new API key is current"
    );
    assert!(
        sim.api_keys().iter().any(|k| k.sid == now.api_key_sid),
        "the new key exists at Twilio"
    );
    log.lock().expect("log").clone()
}

/// Runs every fixture, each function on its own environment over recording ports; returns the
/// port calls each function made.
async fn run_all() -> BTreeMap<&'static str, BTreeSet<(&'static str, &'static str)>> {
    let mut calls = BTreeMap::new();
    let all = fixtures();
    calls.insert("credential-rotation", run_rotation(&all).await);
    for function in BINARIES {
        if function == "credential-rotation" {
            continue;
        }
        let env = TestEnv::start().await;
        let log: Log = Arc::default();
        let svc = recording(&env, &log);
        for f in all.iter().filter(|f| f.function == function) {
            let (ok, got) = run(&svc, f).await;
            assert!(
                ok,
                "events/{}/{}.json: expected {:?}, got {got}",
                f.function, f.name, f.expect
            );
        }
        let seen = log.lock().expect("log").clone();
        calls.insert(function, seen);
    }
    calls
}

#[tokio::test]
async fn every_fixture_comes_to_its_outcome() {
    herald::telemetry::set_metrics_output(herald::telemetry::MetricsOutput::Off);
    let calls = run_all().await;
    assert!(calls["send-sms"].contains(&("send_queue", "send_batch")));
    assert!(calls["webhook-receiver"].contains(&("opt_outs", "set_opt_out")));
}

#[test]
fn every_fixture_file_is_loaded_by_a_test() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut on_disk = BTreeSet::new();
    for dir in std::fs::read_dir(&root).expect("events/") {
        let dir = dir.expect("entry").path();
        for file in std::fs::read_dir(&dir).expect("events/<function>/") {
            let file = file.expect("entry").path();
            on_disk.insert(format!(
                "{}/{}",
                dir.file_name().and_then(|n| n.to_str()).unwrap_or_default(),
                file.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
            ));
        }
    }
    let loaded: BTreeSet<String> = fixtures()
        .iter()
        .map(|f| format!("{}/{}.json", f.function, f.name))
        .collect();
    assert_eq!(
        on_disk, loaded,
        "every file in events/ is a fixture a test runs"
    );
}

// ------------------------------------------------------------------------------------------
// Least privilege
// ------------------------------------------------------------------------------------------

/// Grants a function needs on paths the fixtures do not reach, and why. Each is checked to be
/// something the code can call (`needs`), never a free-form string, and the role must grant it.
fn beyond_fixtures(function: &str) -> Vec<(&'static str, &'static str, &'static str)> {
    let retry = (
        "retry_queue",
        "send",
        "Twilio refusing for now (429, 5xx, timeout) puts the next attempt on the retry queue",
    );
    let timeline = (
        "events",
        "events_for",
        "GET of an existing record shows its timeline; the fixture asks for an unknown id",
    );
    // herald::reconcile: an attempt after one whose outcome is unknown reads whose each matching
    // Twilio resource is, and claims the one it adopts; every create's answer registers its SID.
    let reconcile = [
        (
            "sid_owners",
            "twilio_sid_owner",
            "reconciling an ambiguous attempt reads the owner of each matching Twilio resource",
        ),
        (
            "sid_owners",
            "own_twilio_sid",
            "a create's SID is registered for its record, and an adopted one claimed",
        ),
    ];
    // herald::reconcile, step 5: one unowned match is adopted only when no identical record is
    // in doubt (the in_doubt index).
    let siblings = |port: &'static str, method: &'static str| {
        (
            port,
            method,
            "reconciling an ambiguous attempt with one unowned match reads the identical records in doubt",
        )
    };
    // herald::protect::idempotency::once: a POST with an Idempotency-Key (the fixtures send
    // none) takes the key, stores the response, or releases the key when the work fails.
    let idempotency = [
        (
            "protection",
            "begin",
            "a POST with an Idempotency-Key takes the key",
        ),
        ("protection", "complete", "and stores its response"),
        (
            "protection",
            "release",
            "or releases it when the work fails, so that a retry can run",
        ),
    ];
    match function {
        "send-sms" => [retry, timeline]
            .into_iter()
            .chain(idempotency)
            .chain(reconcile)
            .chain([
                siblings("messages", "records_in_doubt"),
                (
                    "protection",
                    "list_messages_by_caller",
                    "GET /v1/messages and GET /v1/reports/delivery (the by_caller index)",
                ),
                (
                    "protection",
                    "insert_verification",
                    "POST /v1/verifications sends a one-time code",
                ),
                (
                    "protection",
                    "get_verification",
                    "GET /v1/verifications/{id}",
                ),
                (
                    "protection",
                    "update_verification",
                    "POST /v1/verifications/{id}/check",
                ),
            ])
            .collect(),
        "place-call" => [retry, timeline, siblings("calls", "records_in_doubt")]
            .into_iter()
            .chain(idempotency)
            .chain(reconcile)
            .collect(),
        "webhook-receiver" => vec![retry],
        // The fixtures' jobs find nothing waiting; a job for a waiting message or call opens its
        // number and text (delivery.rs/calls.rs: vault.open_string), reads the credentials,
        // records the attempt's event and, failing for now, enqueues the next attempt.
        "retry-processor" => vec![
            (
                "keys",
                "decrypt_data_key",
                "open the sealed number and text",
            ),
            ("secrets", "current", "the Twilio credentials"),
            ("events", "record_event", "the attempt's event"),
            retry,
            reconcile[0],
            reconcile[1],
            siblings("messages", "records_in_doubt"),
            siblings("calls", "records_in_doubt"),
            (
                "keyring",
                "get_key",
                "the sweeper checks a fetched message's recipient against the record's lookup token",
            ),
        ],
        // The fixtures rotate the API key; an auth-token rotation also takes AWSPENDING off
        // the token's version once its promoted version is current.
        "credential-rotation" => vec![(
            "secret_versions",
            "remove_stage",
            "auth-token mode: the token's version leaves AWSPENDING",
        )],
        _ => vec![],
    }
}

/// The (action, resource) a function's SQS triggers need (Lambda polls with its role).
fn trigger_grants(t: &Yaml, function: &str) -> Grants {
    let mut out = Grants::new();
    for (_, ev) in resources(t)[function]["Properties"]["Events"]
        .as_mapping()
        .into_iter()
        .flatten()
    {
        if ev["Type"] == "SQS" {
            let q = target(&ev["Properties"]["Queue"]);
            for a in [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
            ] {
                out.insert((a.to_owned(), q.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn each_role_grants_what_its_function_calls_and_nothing_more() {
    herald::telemetry::set_metrics_output(herald::telemetry::MetricsOutput::Off);
    let t = template();
    let fns = functions(&t);
    let calls = run_all().await;
    let mut problems = Vec::new();
    for (function, seen) in calls {
        let id = &fns[function];
        let granted = grants(&t, &role_of(&t, id));
        let mut required = Grants::new();
        for (port, method) in &seen {
            required.extend(needs(port, method));
        }
        for (port, method, _why) in beyond_fixtures(function) {
            required.extend(needs(port, method));
        }
        let mut allowed = required.clone();
        allowed.extend(trigger_grants(&t, id));
        let logs = id.replace("Function", "Logs");
        allowed.insert(("logs:CreateLogStream".into(), logs.clone()));
        allowed.insert(("logs:PutLogEvents".into(), logs));

        let missing: Vec<_> = required.difference(&granted).collect();
        if !missing.is_empty() {
            problems.push(format!("{function} calls but is not granted: {missing:?}"));
        }
        let broader: Vec<_> = granted.difference(&allowed).collect();
        if !broader.is_empty() {
            problems.push(format!(
                "{function} is granted more than it calls: {broader:?} (it calls {seen:?})"
            ));
        }
        let unused: Vec<_> = trigger_grants(&t, id)
            .difference(&granted)
            .cloned()
            .collect();
        if !unused.is_empty() {
            problems.push(format!("{function}: its trigger needs {unused:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ------------------------------------------------------------------------------------------
// Template rules (each fails if its defect returns)
// ------------------------------------------------------------------------------------------

fn timeout_of(t: &Yaml, id: &str) -> u64 {
    resources(t)[id]["Properties"]["Timeout"]
        .as_u64()
        .unwrap_or_else(|| panic!("{id}: Timeout"))
}

fn global_env_secs(t: &Yaml, name: &str) -> u64 {
    t["Globals"]["Function"]["Environment"]["Variables"][name]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Globals: {name} is a number of seconds"))
}

/// The functions the HTTP API invokes (a Lambda permission for apigateway.amazonaws.com), with
/// the integration timeout (ms) the API's document gives each.
fn api_functions(t: &Yaml) -> BTreeMap<String, u64> {
    let r = resources(t);
    let body = &r["HttpApi"]["Properties"]["DefinitionBody"];
    assert!(
        body["openapi"].is_string() && body["paths"].is_mapping(),
        "HttpApi's DefinitionBody is the OpenAPI document itself (scripts/openapi_aws.py)"
    );
    let integrations = body["components"]["x-amazon-apigateway-integrations"]
        .as_mapping()
        .expect("integrations");
    let fns = functions(t);
    let mut out = BTreeMap::new();
    for (_, p) in r.iter().filter(|(_, v)| {
        v["Type"] == "AWS::Lambda::Permission"
            && v["Properties"]["Principal"] == "apigateway.amazonaws.com"
    }) {
        let id = target(&p["Properties"]["FunctionName"]);
        let bin = fns
            .iter()
            .find(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| panic!("{id} is a function"));
        let ms = integrations
            .get(bin.as_str())
            .and_then(|i| i["timeoutInMillis"].as_u64())
            .unwrap_or_else(|| panic!("{bin}: an integration with timeoutInMillis"));
        out.insert(id, ms);
    }
    assert_eq!(out.len(), 3, "send-sms, place-call, webhook-receiver");
    out
}

#[test]
fn api_functions_finish_within_the_http_apis_30_s_and_twilio_fits_in_them() {
    let t = template();
    let api = api_functions(&t);
    for (id, integration_ms) in &api {
        let timeout = timeout_of(&t, id);
        assert!(
            *integration_ms <= 30_000,
            "{id}: integration timeout {integration_ms} ms"
        );
        assert!(
            timeout * 1000 + 5000 <= 30_000,
            "{id}: timeout {timeout} s leaves no margin under the HTTP API's 30 s"
        );
        assert!(
            timeout * 1000 < *integration_ms,
            "{id}: its {timeout} s timeout outlasts its integration's {integration_ms} ms"
        );
    }
    // One attempt: up to three Twilio requests, each at most connect + request.
    let connect = global_env_secs(&t, "TWILIO_CONNECT_TIMEOUT_SECS");
    let request = global_env_secs(&t, "TWILIO_REQUEST_TIMEOUT_SECS");
    let attempt = 3 * (connect + request);
    let lease = global_env_secs(&t, "ATTEMPT_LEASE_SECS");
    for id in ["SendSmsFunction", "PlaceCallFunction"] {
        let timeout = timeout_of(&t, id);
        assert!(
            attempt < timeout,
            "{id}: one attempt ({attempt} s) does not fit in {timeout} s"
        );
        assert!(
            lease > timeout,
            "ATTEMPT_LEASE_SECS {lease} <= {id}'s {timeout} s"
        );
    }
    assert!(lease > connect + request);
    for q in ["SendQueue", "RetryQueue"] {
        let vis = resources(&t)[q]["Properties"]["VisibilityTimeout"]
            .as_u64()
            .expect("VisibilityTimeout");
        assert!(
            lease < vis,
            "ATTEMPT_LEASE_SECS {lease} >= {q}'s visibility {vis}"
        );
    }
}

#[test]
fn every_function_logs_json_as_its_code_writes() {
    // herald::telemetry writes JSON lines.
    assert!(include_str!("../../shared/src/telemetry.rs").contains(".json()"));
    let t = template();
    for (bin, id) in functions(&t) {
        let lc = &resources(&t)[id.as_str()]["Properties"]["LoggingConfig"];
        assert_eq!(lc["LogFormat"], "JSON", "{bin}: LogFormat");
        assert_eq!(
            target(&lc["LogGroup"]),
            id.replace("Function", "Logs"),
            "{bin}: its log group"
        );
        // EMF metric lines carry no level: Lambda reads them as INFO and would drop them above.
        for level in ["ApplicationLogLevel", "SystemLogLevel"] {
            assert!(
                matches!(lc[level].as_str(), None | Some("TRACE" | "DEBUG" | "INFO")),
                "{bin}: {level} above INFO drops the metrics"
            );
        }
    }
}

fn tag_values(tags: &Yaml) -> BTreeMap<String, String> {
    let show = |v: &Yaml| match v {
        Yaml::Tagged(tag) => format!("{} {}", tag.tag, tag.value.as_str().unwrap_or_default()),
        other => other.as_str().unwrap_or_default().to_owned(),
    };
    match tags {
        // [{Key, Value}] (CloudFormation)
        Yaml::Sequence(s) => s
            .iter()
            .map(|kv| {
                (
                    kv["Key"].as_str().unwrap_or_default().to_owned(),
                    show(&kv["Value"]),
                )
            })
            .collect(),
        // {Key: Value} (SAM, API Gateway v2)
        Yaml::Mapping(m) => m
            .iter()
            .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), show(v)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

#[test]
fn every_taggable_resource_is_tagged() {
    let t = template();
    let want: BTreeMap<String, String> = [
        ("Environment", "!Ref Stage"),
        ("Service", "herald"),
        ("Owner", "!Ref Owner"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert!(
        t["Parameters"]["Owner"]["Default"].is_string(),
        "Owner has a default"
    );
    let g = &t["Globals"]["Function"];
    assert_eq!(tag_values(&g["Tags"]), want, "Globals.Function.Tags");
    assert_eq!(g["PropagateTags"].as_bool(), Some(true));
    let taggable = [
        "AWS::KMS::Key",
        "AWS::SecretsManager::Secret",
        "AWS::DynamoDB::Table",
        "AWS::SQS::Queue",
        "AWS::Logs::LogGroup",
        "AWS::IAM::Role",
        "AWS::SNS::Topic",
        "AWS::CloudWatch::Alarm",
        "AWS::ApiGatewayV2::DomainName",
        "AWS::Serverless::HttpApi",
    ];
    let mut seen = 0;
    for (id, r) in resources(&t) {
        let ty = r["Type"].as_str().unwrap_or_default();
        if taggable.contains(&ty) {
            seen += 1;
            assert_eq!(
                tag_values(&r["Properties"]["Tags"]),
                want,
                "{}: Tags",
                id.as_str().unwrap_or_default()
            );
        } else if ty == "AWS::Serverless::Function" {
            assert!(
                r["Properties"]["Tags"].is_null(),
                "functions take the Globals' tags"
            );
        }
    }
    assert!(seen > 30, "{seen} taggable resources");
}

/// The alarms that watch `metric` (in `namespace`), by the value of their one dimension.
fn alarms_on<'a>(t: &'a Yaml, namespace: &str, metric: &str) -> Vec<(&'a Yaml, String)> {
    resources(t)
        .values()
        .filter(|r| {
            r["Type"] == "AWS::CloudWatch::Alarm"
                && r["Properties"]["Namespace"] == namespace
                && r["Properties"]["MetricName"] == metric
        })
        .map(|r| {
            let p = &r["Properties"];
            assert_eq!(target(&p["AlarmActions"][0]), "AlarmTopic");
            (p, target(&p["Dimensions"][0]["Value"]))
        })
        .collect()
}

#[test]
fn alarms_watch_queue_age_api_5xx_and_durations_near_the_timeout() {
    let t = template();
    let aged: BTreeSet<String> = alarms_on(&t, "AWS/SQS", "ApproximateAgeOfOldestMessage")
        .into_iter()
        .map(|(_, q)| q.trim_end_matches(".QueueName").to_owned())
        .collect();
    assert_eq!(aged, ["RetryQueue", "SendQueue"].map(String::from).into());
    let api = alarms_on(&t, "AWS/ApiGateway", "5xx");
    assert_eq!(api.len(), 1);
    assert_eq!(api[0].0["Dimensions"][0]["Name"], "ApiId");
    assert_eq!(api[0].1, "HttpApi");
    let durations = alarms_on(&t, "AWS/Lambda", "Duration");
    for (_, id) in functions(&t) {
        let (p, _) = durations
            .iter()
            .find(|(_, f)| *f == id)
            .unwrap_or_else(|| panic!("{id}: a Duration alarm"));
        assert_eq!(p["Statistic"], "Maximum");
        let ms = p["Threshold"].as_f64().expect("Threshold");
        let timeout = timeout_of(&t, &id) as f64 * 1000.0;
        assert!(
            (0.8 * timeout..=0.9 * timeout).contains(&ms),
            "{id}: Duration alarm at {ms} ms, not 80-90 % of {timeout} ms"
        );
    }
    // CloudWatch must be able to publish to the (encrypted) topic: a key of the stack's whose
    // policy lets cloudwatch.amazonaws.com use it, never the AWS managed alias/aws/sns.
    let topic = &resources(&t)["AlarmTopic"]["Properties"];
    let key = target(&topic["KmsMasterKeyId"]);
    assert_ne!(key, "alias/aws/sns");
    let statements = list(&resources(&t)[key.as_str()]["Properties"]["KeyPolicy"]["Statement"]);
    assert!(
        statements.iter().any(|s| {
            let actions: BTreeSet<&str> = list(&s["Action"])
                .iter()
                .filter_map(|a| a.as_str())
                .collect();
            s["Principal"]["Service"] == "cloudwatch.amazonaws.com"
                && actions == BTreeSet::from(["kms:Decrypt", "kms:GenerateDataKey*"])
                && !s["Condition"].is_null()
        }),
        "{key}: CloudWatch may use it, under conditions"
    );
}

#[test]
fn sweep_schedule_is_named_per_stage() {
    let t = template();
    let sweep = &resources(&t)["RetryProcessorFunction"]["Properties"]["Events"]["Sweep"];
    assert_eq!(sweep["Type"], "ScheduleV2");
    let name = target(&sweep["Properties"]["Name"]);
    assert!(
        name.contains("${Stage}") || name.contains("Stage"),
        "{name}"
    );
}

#[test]
fn the_stack_never_writes_the_secrets_value() {
    // Either property in the template makes CloudFormation write a new AWSCURRENT version when
    // it changes, over the real credentials.
    let t = template();
    let p = &resources(&t)["TwilioSecret"]["Properties"];
    assert!(p["SecretString"].is_null(), "TwilioSecret: SecretString");
    assert!(
        p["GenerateSecretString"].is_null(),
        "TwilioSecret: GenerateSecretString"
    );
}

#[test]
fn sam_builds_are_not_cached() {
    // SAM's cache key for a provided.* function ignores shared/: a cached build ships stale code.
    let config = include_str!("../../samconfig.toml");
    assert!(config.contains("cached = false"));
    assert!(
        !config
            .lines()
            .any(|l| l.trim_start().starts_with("cached") && l.contains("true")),
        "samconfig.toml caches builds"
    );
}

#[test]
fn every_file_the_template_cites_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = template_text();
    let mut cited = BTreeSet::new();
    for word in text.split(|c: char| c.is_whitespace() || "()`,;\"'[]{}".contains(c)) {
        let word = word.trim_end_matches(['.', ':']);
        let is_path = [
            "infra/",
            "scripts/",
            "shared/",
            "functions/",
            "local/",
            "events/",
        ]
        .iter()
        .any(|p| word.starts_with(p))
            || word == "BENCHMARKS.md"
            || word == "README.md";
        if is_path && !word.contains('<') && !word.contains('$') {
            cited.insert(word.to_owned());
        }
    }
    assert!(cited.contains("infra/openapi.yaml"), "{cited:?}");
    for path in &cited {
        assert!(
            root.join(path).exists(),
            "infra/template.yaml cites {path}, which does not exist"
        );
    }
}
