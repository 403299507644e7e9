//! The rotation on Secrets Manager (moto on a loopback port) with the Twilio simulator.
//!
//! moto cannot leave `RotateSecret`'s placeholder (a version staged `AWSPENDING` without a
//! value: without a rotation Lambda it makes the new version current at once), so each test
//! stores the pending version the way `createSecret` does (a key created at the simulator, or
//! its secondary token) and runs `setSecret`, `testSecret` and `finishSecret` twice each through
//! the `SecretsManagerSource` adapter. `createSecret` itself runs on the SQLite store
//! (`tests/steps.rs`).

use std::sync::Arc;

use aws_config::Region;
use credential_rotation::{
    Outcome, RotationConfig, RotationError, RotationMode, Rotator, Step, key_name,
    promoted_version_id, run_step,
};
use herald::Secret;
use herald::adapters::aws::SecretsManagerSource;
use herald::ports::{
    AWSCURRENT, AWSPENDING, AWSPREVIOUS, Clock, ManualClock, SecretSource, SecretVersions,
    TwilioCredentials,
};
use herald::testing::{aws_test_endpoint, unique};
use herald::twilio::AccountAuth;

struct Fx {
    sim: twilio_sim::SimHandle,
    client: aws_sdk_secretsmanager::Client,
    source: SecretsManagerSource,
    arn: String,
    rotator: Rotator,
    creds: TwilioCredentials,
}

const FIRST: &str = "first-version-0000000000000000000000";

async fn fixture() -> Fx {
    let creds = TwilioCredentials {
        account_sid: format!("AC{}", "c3".repeat(16)),
        api_key_sid: format!("SK{}", "d4".repeat(16)),
        api_key_secret: Secret::new("key-secret-0".into()),
        auth_token: Secret::new("auth-token-0".into()),
        previous_auth_token: None,
        previous_valid_until_ms: None,
    };
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let mut cfg =
        twilio_sim::SimConfig::new(creds.account_sid.clone(), creds.auth_token.expose().clone());
    cfg.api_keys = vec![(
        creds.api_key_sid.clone(),
        creds.api_key_secret.expose().clone(),
    )];
    cfg.callback_mode = twilio_sim::CallbackMode::Manual;
    let sim = twilio_sim::Simulator::start(cfg).await.unwrap();
    let sdk = herald::adapters::aws::sdk_loader()
        .endpoint_url(aws_test_endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "herald-rotation",
        ))
        .load()
        .await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let arn = client
        .create_secret()
        .name(unique("herald-twilio"))
        .client_request_token("zero-version-00000000000000000000000")
        .secret_string("{}")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    // Rotation on (moto: a schedule), then the credentials as the current version.
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
        .unwrap();
    client
        .put_secret_value()
        .secret_id(&arn)
        .client_request_token(FIRST)
        .secret_string(serde_json::to_string(&creds).unwrap())
        .send()
        .await
        .unwrap();
    let source = SecretsManagerSource::new(client.clone(), arn.clone());
    let rotator = Rotator::new(
        &RotationConfig {
            api_base_url: sim.base_url(),
            accounts_base_url: sim.base_url(),
            mode: RotationMode::ApiKey,
            grace_ms: 60_000,
            request_timeout: std::time::Duration::from_secs(5),
        },
        clock as Arc<dyn Clock>,
    )
    .unwrap();
    Fx {
        sim,
        client,
        source,
        arn,
        rotator,
        creds,
    }
}

async fn put_pending(fx: &Fx, token: &str, doc: &TwilioCredentials) {
    fx.client
        .put_secret_value()
        .secret_id(&fx.arn)
        .client_request_token(token)
        .secret_string(serde_json::to_string(doc).unwrap())
        .version_stages(AWSPENDING)
        .send()
        .await
        .unwrap();
}

async fn rest_twice(r: &Rotator, s: &dyn SecretVersions, token: &str) {
    for step in [Step::Create, Step::Set, Step::Test, Step::Finish] {
        run_step(r, s, step, token).await.unwrap();
        assert_eq!(
            run_step(r, s, step, token).await.unwrap(),
            Outcome::Unchanged,
            "{} twice",
            step.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_then_auth_token_rotation_on_secrets_manager() {
    let fx = fixture().await;
    let auth = AccountAuth::of(&fx.creds);

    // API key.
    let t1 = "10000000-aaaa-bbbb-cccc-dddddddddddd";
    let key = fx
        .rotator
        .twilio
        .create_key(auth, &key_name(t1))
        .await
        .unwrap();
    let mut next = fx.creds.clone();
    next.api_key_sid = key.sid.clone();
    next.api_key_secret = key.secret.clone();
    put_pending(&fx, t1, &next).await;
    rest_twice(&fx.rotator, &fx.source, t1).await;
    let meta = fx.source.describe().await.unwrap();
    assert!(meta.has_stage(t1, AWSCURRENT), "{meta:?}");
    assert!(meta.has_stage(FIRST, AWSPREVIOUS), "{meta:?}");
    assert_eq!(meta.version_with(AWSPENDING), None, "{meta:?}");
    assert_eq!(fx.source.current().await.unwrap(), next);

    // Auth token: the final document is put current after an UpdateSecretVersionStage.
    let t2 = "20000000-aaaa-bbbb-cccc-dddddddddddd";
    let r = fx.rotator.with_mode(RotationMode::AuthToken);
    let mut pending = next.clone();
    pending.auth_token = r
        .twilio
        .create_secondary_auth_token(&r.accounts_base_url, auth)
        .await
        .unwrap();
    put_pending(&fx, t2, &pending).await;
    rest_twice(&r, &fx.source, t2).await;
    let meta = fx.source.describe().await.unwrap();
    assert_eq!(
        meta.version_with(AWSCURRENT),
        Some(promoted_version_id(t2).as_str()),
        "{meta:?}"
    );
    assert_eq!(meta.version_with(AWSPREVIOUS), Some(t1), "{meta:?}");
    assert_eq!(meta.version_with(AWSPENDING), None, "{meta:?}");
    let cur = fx.source.current().await.unwrap();
    assert_eq!(&fx.sim.auth_token(), cur.auth_token.expose());
    assert_eq!(cur.previous_auth_token.as_ref(), Some(&fx.creds.auth_token));
    // The first key is neither current nor previous any more: revoked.
    let live: Vec<String> = fx.sim.api_keys().into_iter().map(|k| k.sid).collect();
    assert_eq!(live, vec![key.sid.clone()]);
    assert!(fx.rotator.twilio.probe_key(&fx.creds).await.is_err());
    assert!(fx.rotator.twilio.probe_key(&cur).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tokens_and_disabled_rotation_are_refused_on_secrets_manager() {
    let fx = fixture().await;
    let err = run_step(
        &fx.rotator,
        &fx.source,
        Step::Finish,
        "90000000-aaaa-bbbb-cccc-dddddddddddd",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RotationError::UnknownVersion(_)), "{err}");
    // A secret whose rotation was never turned on.
    let plain = fx
        .client
        .create_secret()
        .name(unique("herald-plain"))
        .client_request_token(FIRST)
        .secret_string(serde_json::to_string(&fx.creds).unwrap())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let plain = SecretsManagerSource::new(fx.client.clone(), plain);
    let err = run_step(&fx.rotator, &plain, Step::Create, FIRST)
        .await
        .unwrap_err();
    assert!(matches!(err, RotationError::RotationDisabled), "{err}");
    assert_eq!(fx.sim.api_keys().len(), 1, "no key created");
}
