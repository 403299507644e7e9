//! The conformance suite of the versioned secret ([`SecretVersions`]) against the SQLite secret
//! store and, through moto on a loopback port, Secrets Manager (see `conformance_aws.rs` for how
//! the moto server is found or started).
#![cfg(feature = "test-util")]

use std::sync::Arc;

use herald::adapters::embedded::SqliteSecretStore;
use herald::ports::{AWSCURRENT, Clock, SecretError, SecretSource, SecretVersions};
use herald::testing::{self, unique};
use herald::testing_secrets::secret_versions_contract;

const INITIAL: &str = "initial-version-00000000000000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_secret_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = testing::test_clock();
    let store = SqliteSecretStore::open(
        &dir.path().join("herald.db"),
        "herald/twilio",
        clock as Arc<dyn Clock>,
    )
    .expect("open");
    assert!(store.create_if_absent(INITIAL, "v1").await.expect("create"));
    assert!(
        !store
            .create_if_absent("another-0000000000000000000000000", "x")
            .await
            .expect("create")
    );
    store.set_rotation_enabled(true).await.expect("enable");
    let s = store.clone();
    secret_versions_contract(&store, INITIAL, move |token, _| {
        let s = s.clone();
        async move {
            s.start_rotation(&token).await.expect("start rotation");
            true
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rotation_needs_it_enabled_and_one_at_a_time() {
    let clock = testing::test_clock();
    let store = SqliteSecretStore::in_memory("s", clock as Arc<dyn Clock>).expect("open");
    assert!(
        matches!(store.describe().await, Err(SecretError::Invalid(_))),
        "no secret yet"
    );
    assert!(matches!(
        store.current().await,
        Err(SecretError::Invalid(_))
    ));
    store.create_if_absent(INITIAL, "{}").await.expect("create");
    assert!(
        matches!(store.start_rotation("t-1").await, Err(SecretError::Invalid(m)) if m.contains("not enabled"))
    );
    assert!(
        !store
            .describe()
            .await
            .expect("describe")
            .versions
            .contains_key("t-1"),
        "nothing changed"
    );
    store.set_rotation_enabled(true).await.expect("enable");
    store.start_rotation("t-1").await.expect("start");
    store
        .start_rotation("t-1")
        .await
        .expect("the same token again");
    assert!(
        store.start_rotation("t-2").await.is_err(),
        "t-1 is in progress"
    );
    assert!(
        matches!(store.current().await, Err(SecretError::Invalid(_))),
        "{{}} is not a credentials document"
    );
    assert_eq!(
        store.describe().await.expect("d").version_with(AWSCURRENT),
        Some(INITIAL)
    );
}

#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_conforms_through_moto() {
    use aws_config::Region;
    use herald::adapters::aws::SecretsManagerSource;

    let sdk = herald::adapters::aws::sdk_loader()
        .endpoint_url(testing::aws_test_endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "herald-conformance",
        ))
        .load()
        .await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = unique("herald-rotating");
    let arn = client
        .create_secret()
        .name(&name)
        .client_request_token("first-version-0000000000000000000000")
        .secret_string("v0")
        .send()
        .await
        .expect("create")
        .arn
        .expect("arn");
    let source = SecretsManagerSource::new(client.clone(), arn.clone());
    assert!(!source.describe().await.expect("describe").rotation_enabled);
    // moto: RotateSecret with a schedule turns rotation on; without a rotation Lambda it makes
    // a new version, without a value, current at once. Then "v1" is put current, as the suite
    // starts.
    client
        .rotate_secret()
        .secret_id(&arn)
        .rotation_rules(
            aws_sdk_secretsmanager::types::RotationRulesType::builder()
                .automatically_after_days(30)
                .build(),
        )
        .send()
        .await
        .expect("rotate");
    client
        .put_secret_value()
        .secret_id(&arn)
        .client_request_token(INITIAL)
        .secret_string("v1")
        .send()
        .await
        .expect("put v1");
    let missing = SecretsManagerSource::new(client.clone(), unique("herald-missing"));
    assert!(matches!(
        missing.describe().await,
        Err(SecretError::Invalid(_))
    ));
    assert!(missing.get_by_stage(AWSCURRENT).await.is_err());
    secret_versions_contract(&source, INITIAL, |token, value| {
        let (client, arn) = (client.clone(), arn.clone());
        async move {
            client
                .put_secret_value()
                .secret_id(arn)
                .client_request_token(token)
                .secret_string(value)
                .version_stages("AWSPENDING")
                .send()
                .await
                .expect("put pending");
            false
        }
    })
    .await;
}
