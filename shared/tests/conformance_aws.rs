//! The conformance suite against the AWS adapters (DynamoDB, KMS, Secrets Manager) through a
//! moto server on a loopback port; no AWS account, no real credentials.
//!
//! The server: `HERALD_TEST_AWS_ENDPOINT` when set (scripts/test.sh starts
//! `scripts/moto_server.py` and names it); otherwise these tests start that script themselves
//! from `.venv/bin/python`, once per test binary, on a port the OS picks, and it exits when this
//! process does (it waits for its stdin to close). That moto handles one request at a time:
//! moto checks a condition expression and then writes in separate steps, so its usual threaded
//! server lets two concurrent conditional writes both pass (the race tests catch it), which
//! DynamoDB never does. With neither, the tests fail and say how to run them. Every test makes
//! its own tables, keys and secrets, so they run in parallel against one server.
#![cfg(all(feature = "test-util", feature = "aws"))]

use std::sync::Arc;

use aws_config::{Region, SdkConfig};
use aws_sdk_dynamodb::types::AttributeValue;
use herald::adapters::aws::{
    AwsAdapters, AwsResources, DynamoStore, KmsKeyService, SecretsManagerSource, TableNames,
    create_tables,
};
use herald::domain::{MessageStatus, Subject};
use herald::ports::{Clock, ManualClock, Records, SecretError, SecretSource, TwilioCredentials};
use herald::testing::{self, Alternate, Ports};

fn endpoint() -> String {
    testing::aws_test_endpoint()
}

async fn sdk_config() -> SdkConfig {
    herald::adapters::aws::sdk_loader()
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "herald-conformance",
        ))
        .load()
        .await
}

struct Fixture {
    sdk: SdkConfig,
    resources: AwsResources,
    foreign_key_id: String,
    clock: Arc<ManualClock>,
}

impl Fixture {
    async fn new() -> Self {
        let sdk = sdk_config().await;
        let id = testing::unique("herald");
        let endpoint = endpoint();
        let tables = TableNames {
            messages: format!("{id}-messages"),
            events: format!("{id}-events"),
            state: format!("{id}-state"),
        };
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        create_tables(&ddb, &tables).await.expect("create tables");
        let kms = aws_sdk_kms::Client::new(&sdk);
        let mut keys = Vec::new();
        for _ in 0..2 {
            let out = kms.create_key().send().await.expect("create a KMS key");
            keys.push(out.key_metadata.expect("key metadata").key_id);
        }
        let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
        let secret = secrets
            .create_secret()
            .name(format!("{id}/twilio"))
            .secret_string(serde_json::to_string(&creds("1")).expect("json"))
            .send()
            .await
            .expect("create a secret");
        let foreign_key_id = keys.pop().expect("two keys");
        Self {
            resources: AwsResources {
                tables,
                kms_key_id: keys.pop().expect("two keys"),
                twilio_secret_arn: secret.arn.expect("secret ARN"),
                // The store tests make no queue calls; the queue suite has its own queues.
                send_queue: (
                    format!("{endpoint}/000000000000/{id}-send"),
                    format!("{endpoint}/000000000000/{id}-send-dlq"),
                ),
                retry_queue: (
                    format!("{endpoint}/000000000000/{id}-retry"),
                    format!("{endpoint}/000000000000/{id}-retry-dlq"),
                ),
            },
            sdk,
            foreign_key_id,
            clock: testing::test_clock(),
        }
    }

    fn adapters(&self) -> AwsAdapters {
        AwsAdapters::new(
            &self.sdk,
            &self.resources,
            self.clock.clone() as Arc<dyn Clock>,
        )
    }

    fn ddb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    /// A store over its own client, reading pages of 3 items so paging is exercised.
    fn small_page_store(&self) -> DynamoStore {
        DynamoStore::new(
            self.ddb(),
            self.resources.tables.clone(),
            self.clock.clone() as Arc<dyn Clock>,
        )
        .with_page_size(3)
    }

    fn foreign_keys(&self) -> Arc<KmsKeyService> {
        Arc::new(KmsKeyService::new(
            aws_sdk_kms::Client::new(&self.sdk),
            self.foreign_key_id.clone(),
        ))
    }

    /// Two stores over two clients, used in turn, with small pages.
    fn ports(&self) -> Ports {
        let store = Arc::new(Alternate::new(vec![
            Arc::new(self.small_page_store()),
            Arc::new(self.small_page_store()),
        ]));
        Ports {
            messages: store.clone(),
            events: store.clone(),
            opt_outs: store.clone(),
            keyring: store,
            keys: self.adapters().keys,
            foreign_keys: self.foreign_keys(),
            clock: self.clock.clone(),
        }
    }

    /// The adapters exactly as a Lambda builds them.
    fn production_ports(&self) -> Ports {
        let a = self.adapters();
        Ports {
            messages: a.store.clone(),
            events: a.store.clone(),
            opt_outs: a.store.clone(),
            keyring: a.store,
            keys: a.keys,
            foreign_keys: self.foreign_keys(),
            clock: self.clock.clone(),
        }
    }
}

fn creds(version: &str) -> TwilioCredentials {
    TwilioCredentials {
        account_sid: "AC00000000000000000000000000000000".to_owned(),
        api_key_sid: format!("SK0000000000000000000000000000000{version}"),
        api_key_secret: format!("api-key-secret-{version}").into(),
        auth_token: format!("auth-token-{version}").into(),
        previous_auth_token: None,
        previous_valid_until_ms: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_service() {
    let f = Fixture::new().await;
    let p = f.ports();
    testing::key_service_contract(p.keys, p.foreign_keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyring() {
    let f = Fixture::new().await;
    testing::keyring_contract(f.ports().keyring).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyring_races() {
    let f = Fixture::new().await;
    testing::keyring_races(f.ports().keyring).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vault() {
    let f = Fixture::new().await;
    testing::vault_contract(&f.ports()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn message_store() {
    let f = Fixture::new().await;
    let p = f.ports();
    testing::message_store_contract(p.messages.clone(), &p.vault()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn message_store_races() {
    let f = Fixture::new().await;
    let p = f.ports();
    testing::message_store_races(p.messages.clone(), &p.vault()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attempts() {
    let f = Fixture::new().await;
    let p = f.ports();
    testing::attempt_contract(p.messages.clone(), &p.vault()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attempt_races() {
    let f = Fixture::new().await;
    let p = f.ports();
    testing::attempt_races(p.messages.clone(), &p.vault()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_in_doubt() {
    let f = Fixture::new().await;
    let p = f.ports();
    testing::message_in_doubt_contract(p.messages.clone(), &p.vault()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_by_status_paged() {
    let f = Fixture::new().await;
    let p = f.ports();
    herald::testing_paging::message_paging_contract(p.messages.clone(), &p.vault()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_store() {
    let f = Fixture::new().await;
    let p = f.ports();
    testing::event_store_contract(p.events, p.clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_store_races() {
    let f = Fixture::new().await;
    let p = f.ports();
    testing::event_store_races(p.events, p.clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opt_outs() {
    let f = Fixture::new().await;
    let p = f.ports();
    testing::opt_out_contract(p.opt_outs.clone(), &p.vault()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opt_out_races() {
    let f = Fixture::new().await;
    let p = f.ports();
    testing::opt_out_races(p.opt_outs.clone(), &p.vault()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opt_outs_are_state_items_keyed_by_token() {
    let f = Fixture::new().await;
    let p = f.production_ports();
    let token = p.vault().lookup_token("+14155550123").await.expect("token");
    assert!(p.opt_outs.set_opt_out(&token, true, 42).await.expect("set"));
    let item = f
        .ddb()
        .get_item()
        .table_name(&f.resources.tables.state)
        .key("pk", AttributeValue::S(format!("optout#{}", token.0)))
        .send()
        .await
        .expect("get")
        .item
        .expect("present");
    assert_eq!(item.get("opted_out"), Some(&AttributeValue::Bool(true)));
    assert_eq!(item.get("at_ms"), Some(&AttributeValue::N("42".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all_two_clients_small_pages() {
    let f = Fixture::new().await;
    testing::run_all(&f.ports()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all_as_built_for_lambda() {
    let f = Fixture::new().await;
    testing::run_all(&f.production_ports()).await;
}

/// Every attribute name and value of every item of `table`, as bytes (nested values too).
async fn scan(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Vec<Vec<u8>> {
    fn flatten(v: &AttributeValue, out: &mut Vec<Vec<u8>>) {
        match v {
            AttributeValue::S(s) | AttributeValue::N(s) => out.push(s.clone().into_bytes()),
            AttributeValue::B(b) => out.push(b.as_ref().to_vec()),
            AttributeValue::Ss(v) | AttributeValue::Ns(v) => {
                out.extend(v.iter().map(|s| s.clone().into_bytes()))
            }
            AttributeValue::Bs(v) => out.extend(v.iter().map(|b| b.as_ref().to_vec())),
            AttributeValue::L(v) => v.iter().for_each(|x| flatten(x, out)),
            AttributeValue::M(m) => m.iter().for_each(|(k, x)| {
                out.push(k.clone().into_bytes());
                flatten(x, out);
            }),
            AttributeValue::Bool(b) => out.push(b.to_string().into_bytes()),
            AttributeValue::Null(_) => {}
            other => out.push(format!("{other:?}").into_bytes()),
        }
    }
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = ddb
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("scan");
        for item in page.items.unwrap_or_default() {
            for (name, value) in &item {
                out.push(name.clone().into_bytes());
                flatten(value, &mut out);
            }
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn personal_data_is_not_stored_in_plaintext() {
    let f = Fixture::new().await;
    let p = f.production_ports();
    let vault = p.vault();
    let data = testing::store_personal_data(p.messages.as_ref(), p.events.as_ref(), &vault).await;
    let ddb = f.ddb();
    let t = &f.resources.tables;
    let mut dump = Vec::new();
    for table in [&t.messages, &t.events, &t.state] {
        dump.extend(scan(&ddb, table).await);
    }
    data.assert_absent_from(&dump);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn items_have_the_documented_attributes() {
    let f = Fixture::new().await;
    let p = f.production_ports();
    let vault = p.vault();
    let m = testing::sample_message(&vault, 1_731_600_000_000, "+14155550199", "hi").await;
    p.messages.insert_record(&m).await.expect("insert");
    p.messages
        .apply_message_status(
            &m.id,
            &testing::change(1, MessageStatus::Sent, 1_731_600_000_500),
        )
        .await
        .expect("apply");
    let ddb = f.ddb();
    let item = ddb
        .get_item()
        .table_name(&f.resources.tables.messages)
        .key("id", AttributeValue::S(m.id.to_string()))
        .send()
        .await
        .expect("get")
        .item
        .expect("present");
    let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let n = |k: &str| item.get(k).and_then(|v| v.as_n().ok()).cloned();
    assert_eq!(s("status").as_deref(), Some("sent"));
    assert_eq!(n("status_rank").as_deref(), Some("5"));
    assert_eq!(n("attempt").as_deref(), Some("1"));
    assert_eq!(s("caller").as_deref(), Some("conformance"));
    assert_eq!(s("to_token"), Some(m.to.token.0.clone()));
    assert_eq!(n("created_at_ms").as_deref(), Some("1731600000000"));
    assert_eq!(n("version").as_deref(), Some("1"));
    assert!(s("doc").is_some());

    // The by_status index finds it.
    let found = ddb
        .query()
        .table_name(&f.resources.tables.messages)
        .index_name("by_status")
        .key_condition_expression("#s = :s")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":s", AttributeValue::S("sent".into()))
        .send()
        .await
        .expect("query by_status");
    assert_eq!(found.count, 1);

    // Events carry their TTL in epoch seconds, rounded up; the table has TTL on that attribute.
    let subject = Subject::from(&m.id);
    let e = testing::sample_event("ttl-check", &subject, 1_731_600_000_000, 1_731_600_000_001);
    assert!(p.events.record_event(&e).await.expect("record"));
    let item = ddb
        .get_item()
        .table_name(&f.resources.tables.events)
        .key("key", AttributeValue::S("ttl-check".into()))
        .send()
        .await
        .expect("get")
        .item
        .expect("present");
    assert_eq!(
        item.get("expires_at")
            .and_then(|v| v.as_n().ok())
            .map(String::as_str),
        Some("1731600001")
    );
    let ttl = ddb
        .describe_time_to_live()
        .table_name(&f.resources.tables.events)
        .send()
        .await
        .expect("describe ttl")
        .time_to_live_description
        .expect("ttl description");
    assert_eq!(ttl.attribute_name.as_deref(), Some("expires_at"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_tables_is_idempotent() {
    let f = Fixture::new().await;
    create_tables(&f.ddb(), &f.resources.tables)
        .await
        .expect("second create");
    let table = f
        .ddb()
        .describe_table()
        .table_name(&f.resources.tables.messages)
        .send()
        .await
        .expect("describe")
        .table
        .expect("table");
    let mut indexes: Vec<String> = table
        .global_secondary_indexes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.index_name)
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["by_caller", "by_status", "in_doubt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_table_is_an_error_not_a_silence() {
    let f = Fixture::new().await;
    let mut tables = f.resources.tables.clone();
    tables.messages = testing::unique("missing");
    let store = DynamoStore::new(f.ddb(), tables, f.clock.clone() as Arc<dyn Clock>);
    let id = herald::domain::MessageId::generate(1_731_600_000_000);
    assert!(
        Records::<herald::domain::Message>::get_record(&store, &id)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secret_source_reads_the_current_version() {
    let f = Fixture::new().await;
    let source = f.adapters().secrets;
    assert_eq!(source.current().await.expect("current"), creds("1"));

    let client = aws_sdk_secretsmanager::Client::new(&f.sdk);
    client
        .put_secret_value()
        .secret_id(&f.resources.twilio_secret_arn)
        .secret_string(serde_json::to_string(&creds("2")).expect("json"))
        .send()
        .await
        .expect("rotate");
    assert_eq!(source.current().await.expect("current"), creds("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secret_source_refuses_malformed_and_missing_secrets() {
    let f = Fixture::new().await;
    let client = aws_sdk_secretsmanager::Client::new(&f.sdk);
    for (what, text) in [
        ("not JSON", "auth-token-hunter2".to_owned()),
        (
            "missing fields",
            r#"{"account_sid":"AC0","auth_token":"hunter2"}"#.to_owned(),
        ),
    ] {
        let secret = client
            .create_secret()
            .name(testing::unique("herald-bad"))
            .secret_string(text)
            .send()
            .await
            .expect("create");
        let source = SecretsManagerSource::new(client.clone(), secret.arn.expect("arn"));
        match source.current().await {
            Err(SecretError::Invalid(msg)) => {
                assert!(
                    !msg.contains("hunter2"),
                    "{what}: the error quotes the secret"
                )
            }
            other => panic!("{what}: expected Invalid, got {other:?}"),
        }
    }
    let missing = SecretsManagerSource::new(client, testing::unique("herald-missing"));
    assert!(matches!(
        missing.current().await,
        Err(SecretError::Invalid(_))
    ));
}

/// The call store's contract on DynamoDB: two clients used in turn, as two Lambda instances.
mod calls {
    use super::*;
    use herald::domain::CallStatus;
    use herald::ports::{CallStore, Order};
    use herald::testing_calls;

    fn store(f: &Fixture) -> Arc<dyn CallStore> {
        Arc::new(Alternate::new(vec![
            Arc::new(f.small_page_store()),
            Arc::new(f.small_page_store()),
        ]))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn call_store() {
        let f = Fixture::new().await;
        testing_calls::call_store_contract(store(&f), &f.ports().vault()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn call_store_races() {
        let f = Fixture::new().await;
        testing_calls::call_store_races(store(&f), &f.ports().vault()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn calls_in_doubt() {
        let f = Fixture::new().await;
        testing_calls::call_in_doubt_contract(store(&f), &f.ports().vault()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn calls_by_status_paged() {
        let f = Fixture::new().await;
        herald::testing_paging::call_paging_contract(store(&f), &f.ports().vault()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn calls_are_sealed_and_listed_apart_from_messages() {
        let f = Fixture::new().await;
        let p = f.production_ports();
        let vault = p.vault();
        let calls: Arc<dyn CallStore> = f.adapters().store;
        let data = testing_calls::store_call_personal_data(calls.as_ref(), &vault).await;
        let ddb = f.ddb();
        let t = &f.resources.tables;
        let mut dump = Vec::new();
        for table in [&t.messages, &t.events, &t.state] {
            dump.extend(scan(&ddb, table).await);
        }
        data.assert_absent_from(&dump);

        let item = ddb
            .get_item()
            .table_name(&t.messages)
            .key("id", AttributeValue::S(data.id.to_string()))
            .send()
            .await
            .expect("get")
            .item
            .expect("present");
        let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        assert_eq!(s("record_kind").as_deref(), Some("call"));
        assert_eq!(
            s("call_status").as_deref(),
            Some(CallStatus::Queued.as_str())
        );
        // The status index lists calls under statuses no message has; the caller index never
        // sees them.
        assert_eq!(s("status").as_deref(), Some("call:queued"));
        assert!(!item.contains_key("caller"));
        let listed = p
            .messages
            .records_by_status(
                MessageStatus::Queued,
                i64::MAX,
                100,
                Order::OldestFirst,
                None,
            )
            .await
            .expect("list")
            .records;
        assert!(listed.is_empty(), "{listed:?}");
        let calls = calls
            .records_by_status(CallStatus::Queued, i64::MAX, 100, Order::OldestFirst, None)
            .await
            .expect("list calls")
            .records;
        assert_eq!(
            calls.iter().map(|c| &c.id).collect::<Vec<_>>(),
            vec![&data.id]
        );
    }
}

/// The API-protection ports (rate limits, idempotency keys, verifications, queries by caller)
/// on DynamoDB: two clients used in turn, with small pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn protection() {
    let f = Fixture::new().await;
    let store = Arc::new(Alternate::new(vec![
        Arc::new(f.small_page_store()),
        Arc::new(f.small_page_store()),
    ]));
    let vault = f.ports().vault();
    herald::testing_protect::run_all(store.clone(), store, &vault).await;
}

/// Twilio SID ownership on DynamoDB: two clients used in turn, as two Lambda instances, and the
/// store as a Lambda builds it; ownership items are state items keyed by SID.
mod sids {
    use super::*;
    use herald::ports::{SidClaim, SidOwner, SidOwners};
    use herald::testing_sids;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sid_owners_two_clients() {
        let f = Fixture::new().await;
        let store: Arc<dyn SidOwners> = Arc::new(Alternate::new(vec![
            Arc::new(f.small_page_store()),
            Arc::new(f.small_page_store()),
        ]));
        testing_sids::run_all(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sid_owners_as_built_for_lambda() {
        let f = Fixture::new().await;
        let store: Arc<dyn SidOwners> = f.adapters().store;
        testing_sids::run_all(store.clone()).await;

        let sid = "SMabcdef0123456789abcdef0123456789";
        let owner = SidOwner {
            record_id: "msg_owner".to_owned(),
            attempt: 2,
        };
        assert_eq!(
            store
                .own_twilio_sid(sid, &owner, 1_731_600_000_000)
                .await
                .expect("own"),
            SidClaim::Owned
        );
        let item = f
            .ddb()
            .get_item()
            .table_name(&f.resources.tables.state)
            .key("pk", AttributeValue::S(format!("sid#{sid}")))
            .send()
            .await
            .expect("get")
            .item
            .expect("present");
        assert_eq!(
            item.get("owner"),
            Some(&AttributeValue::S("msg_owner".into()))
        );
        assert_eq!(item.get("attempt"), Some(&AttributeValue::N("2".into())));
        // It expires with the records, in epoch seconds (the state table's TTL attribute).
        let ttl: i64 = item
            .get("expires_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .expect("expires_at");
        assert_eq!(
            ttl,
            (1_731_600_000_000 + herald::domain::event::EVENT_RETENTION_MS) / 1000
        );
    }
}
