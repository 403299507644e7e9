//! The rotation steps against the Twilio simulator and the SQLite secret store: every step run
//! twice, API key and auth token, a crash between creating a key and storing it, rotation
//! disabled, unknown and stale tokens. Time comes from a manual clock shared with the simulator.

use std::sync::Arc;

use async_trait::async_trait;
use credential_rotation::{
    Outcome, RotationConfig, RotationError, RotationMode, Rotator, Step, key_name, run_step,
};
use herald::Secret;
use herald::adapters::embedded::SqliteSecretStore;
use herald::ports::{
    AWSCURRENT, AWSPENDING, AWSPREVIOUS, Clock, ManualClock, SecretError, SecretMetadata,
    SecretSource, SecretValue, SecretVersions, TwilioCredentials,
};
use herald::twilio::AccountAuth;

const INITIAL: &str = "initial-00000000000000000000000000";
const GRACE_MS: i64 = 60_000;

struct Fx {
    sim: twilio_sim::SimHandle,
    store: SqliteSecretStore,
    clock: Arc<ManualClock>,
    rotator: Rotator,
    creds: TwilioCredentials,
}

async fn fixture() -> Fx {
    let creds = TwilioCredentials {
        account_sid: format!("AC{}", "a1".repeat(16)),
        api_key_sid: format!("SK{}", "b2".repeat(16)),
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
    let sim_clock = clock.clone();
    cfg.clock = twilio_sim::SimClock::from_fn(move || sim_clock.now_ms());
    let sim = twilio_sim::Simulator::start(cfg).await.expect("simulator");
    let store =
        SqliteSecretStore::in_memory("herald/twilio", clock.clone() as Arc<dyn Clock>).unwrap();
    store
        .create_if_absent(INITIAL, &serde_json::to_string(&creds).unwrap())
        .await
        .unwrap();
    store.set_rotation_enabled(true).await.unwrap();
    let config = RotationConfig {
        api_base_url: sim.base_url(),
        accounts_base_url: sim.base_url(),
        mode: RotationMode::ApiKey,
        grace_ms: GRACE_MS,
        request_timeout: std::time::Duration::from_secs(5),
    };
    let rotator = Rotator::new(&config, clock.clone() as Arc<dyn Clock>).unwrap();
    Fx {
        sim,
        store,
        clock,
        rotator,
        creds,
    }
}

fn token(n: u32) -> String {
    format!("0000000{n}-aaaa-bbbb-cccc-dddddddddddd")
}

/// Runs the four steps, each twice: the second run of each changes nothing.
async fn rotate_twice_each(r: &Rotator, secret: &dyn SecretVersions, t: &str) {
    for step in Step::ALL {
        run_step(r, secret, step, t)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", step.name()));
        let again = run_step(r, secret, step, t)
            .await
            .unwrap_or_else(|e| panic!("{} again: {e}", step.name()));
        assert_eq!(again, Outcome::Unchanged, "{} run twice", step.name());
    }
}

async fn current(store: &SqliteSecretStore) -> TwilioCredentials {
    store.current().await.unwrap()
}

fn live_keys(sim: &twilio_sim::SimHandle) -> Vec<String> {
    let mut k: Vec<String> = sim.api_keys().into_iter().map(|k| k.sid).collect();
    k.sort();
    k
}

async fn key_works(r: &Rotator, c: &TwilioCredentials) -> bool {
    r.twilio.probe_key(c).await.is_ok()
}

#[tokio::test]
async fn api_key_rotation_step_by_step_each_twice() {
    let fx = fixture().await;
    let r = &fx.rotator;
    fx.store.start_rotation(&token(1)).await.unwrap();
    rotate_twice_each(r, &fx.store, &token(1)).await;

    let c1 = current(&fx.store).await;
    assert_ne!(c1.api_key_sid, fx.creds.api_key_sid, "a new key is current");
    assert_eq!(c1.auth_token, fx.creds.auth_token, "the auth token is kept");
    let meta = fx.store.describe().await.unwrap();
    assert!(meta.has_stage(&token(1), AWSCURRENT));
    assert!(meta.has_stage(INITIAL, AWSPREVIOUS));
    assert_eq!(meta.version_with(AWSPENDING), None);
    assert!(key_works(r, &c1).await);
    assert!(
        key_works(r, &fx.creds).await,
        "the previous key stays valid for functions that cached it"
    );
    assert!(
        fx.sim
            .api_keys()
            .iter()
            .any(|k| k.sid == c1.api_key_sid && k.friendly_name == Some(key_name(&token(1))))
    );

    // The next rotation revokes the key that is neither current nor previous any more.
    fx.store.start_rotation(&token(2)).await.unwrap();
    rotate_twice_each(r, &fx.store, &token(2)).await;
    let c2 = current(&fx.store).await;
    assert!(!key_works(r, &fx.creds).await, "the first key is revoked");
    assert!(key_works(r, &c1).await && key_works(r, &c2).await);
    let mut expected = vec![c1.api_key_sid.clone(), c2.api_key_sid.clone()];
    expected.sort();
    assert_eq!(live_keys(&fx.sim), expected, "no key leaked");
}

#[tokio::test]
async fn auth_token_rotation_step_by_step_each_twice() {
    let fx = fixture().await;
    let r = fx.rotator.with_mode(RotationMode::AuthToken);
    fx.store.start_rotation(&token(1)).await.unwrap();
    let now = fx.clock.now_ms();
    rotate_twice_each(&r, &fx.store, &token(1)).await;

    let c1 = current(&fx.store).await;
    assert_ne!(c1.auth_token, fx.creds.auth_token);
    assert_eq!(
        &fx.sim.auth_token(),
        c1.auth_token.expose(),
        "promoted at Twilio"
    );
    assert_eq!(fx.sim.secondary_auth_token(), None);
    assert_eq!(c1.previous_auth_token.as_ref(), Some(&fx.creds.auth_token));
    assert_eq!(c1.previous_valid_until_ms, Some(now + GRACE_MS));
    assert_eq!(c1.api_key_sid, fx.creds.api_key_sid, "the key is kept");
    assert!(key_works(&r, &c1).await);
    assert!(r.twilio.fetch_account(AccountAuth::of(&c1)).await.is_ok());
    assert!(
        r.twilio
            .fetch_account(AccountAuth::of(&fx.creds))
            .await
            .is_err(),
        "Twilio refuses the old token"
    );
    let meta = fx.store.describe().await.unwrap();
    assert_eq!(
        meta.version_with(AWSCURRENT),
        Some(credential_rotation::promoted_version_id(&token(1)).as_str())
    );
    assert_eq!(meta.version_with(AWSPREVIOUS), Some(INITIAL));
    assert_eq!(meta.version_with(AWSPENDING), None);

    // The webhook side: the old token signs only within the window.
    assert_eq!(c1.signing_tokens(now + GRACE_MS - 1).len(), 2);
    fx.clock.advance(GRACE_MS);
    assert_eq!(c1.signing_tokens(fx.clock.now_ms()).len(), 1);

    // An API-key rotation afterwards drops the expired previous token from the document.
    fx.store.start_rotation(&token(2)).await.unwrap();
    rotate_twice_each(&fx.rotator, &fx.store, &token(2)).await;
    let c2 = current(&fx.store).await;
    assert_eq!(c2.auth_token, c1.auth_token);
    assert_eq!(c2.previous_auth_token, None);
    assert!(key_works(&r, &c2).await);
}

#[tokio::test]
async fn a_key_created_before_a_crash_is_revoked_by_the_next_create() {
    let fx = fixture().await;
    let r = &fx.rotator;
    fx.store.start_rotation(&token(1)).await.unwrap();
    // createSecret created the key at Twilio, then died before storing it.
    let orphan = r
        .twilio
        .create_key(AccountAuth::of(&fx.creds), &key_name(&token(1)))
        .await
        .unwrap();
    assert_eq!(live_keys(&fx.sim).len(), 2);
    assert_eq!(
        run_step(r, &fx.store, Step::Create, &token(1))
            .await
            .unwrap(),
        Outcome::Changed
    );
    let pending = fx.store.get_version(&token(1)).await.unwrap().unwrap();
    let pending: TwilioCredentials = serde_json::from_str(pending.text.expose()).unwrap();
    assert_ne!(pending.api_key_sid, orphan.sid);
    assert!(
        !live_keys(&fx.sim).contains(&orphan.sid),
        "the orphan key is revoked"
    );
    assert_eq!(
        live_keys(&fx.sim).len(),
        2,
        "the old key and the pending one"
    );
    rotate_twice_each(r, &fx.store, &token(1)).await;
    assert_eq!(current(&fx.store).await.api_key_sid, pending.api_key_sid);
}

/// A secret store whose next `put_version` fails (Secrets Manager unavailable).
struct FailingPut {
    inner: SqliteSecretStore,
    fail: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl SecretVersions for FailingPut {
    async fn describe(&self) -> Result<SecretMetadata, SecretError> {
        self.inner.describe().await
    }
    async fn get_by_stage(&self, stage: &str) -> Result<Option<SecretValue>, SecretError> {
        self.inner.get_by_stage(stage).await
    }
    async fn get_version(&self, v: &str) -> Result<Option<SecretValue>, SecretError> {
        self.inner.get_version(v).await
    }
    async fn put_version(&self, v: &str, text: &str, stages: &[&str]) -> Result<(), SecretError> {
        if self.fail.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(SecretError::Transient("injected".into()));
        }
        self.inner.put_version(v, text, stages).await
    }
    async fn move_stage(&self, stage: &str, v: &str) -> Result<(), SecretError> {
        self.inner.move_stage(stage, v).await
    }
    async fn remove_stage(&self, stage: &str, v: &str) -> Result<(), SecretError> {
        self.inner.remove_stage(stage, v).await
    }
}

#[tokio::test]
async fn a_key_that_could_not_be_stored_is_revoked_at_once() {
    let fx = fixture().await;
    let failing = FailingPut {
        inner: fx.store.clone(),
        fail: true.into(),
    };
    fx.store.start_rotation(&token(1)).await.unwrap();
    let err = run_step(&fx.rotator, &failing, Step::Create, &token(1))
        .await
        .unwrap_err();
    assert!(matches!(err, RotationError::Secret(_)), "{err}");
    assert_eq!(
        live_keys(&fx.sim),
        vec![fx.creds.api_key_sid.clone()],
        "no key leaked"
    );
    assert!(fx.store.get_version(&token(1)).await.unwrap().is_none());
    rotate_twice_each(&fx.rotator, &failing, &token(1)).await;
    assert_eq!(live_keys(&fx.sim).len(), 2);
}

#[tokio::test]
async fn disabled_rotation_and_unknown_or_stale_tokens_change_nothing() {
    let fx = fixture().await;
    let r = &fx.rotator;
    let before = fx.store.describe().await.unwrap();
    for step in Step::ALL {
        let err = run_step(r, &fx.store, step, &token(9)).await.unwrap_err();
        assert!(matches!(err, RotationError::UnknownVersion(_)), "{err}");
    }
    fx.store.start_rotation(&token(1)).await.unwrap();
    rotate_twice_each(r, &fx.store, &token(1)).await;
    // The first version is AWSPREVIOUS now: not a rotation in progress.
    let err = run_step(r, &fx.store, Step::Create, INITIAL)
        .await
        .unwrap_err();
    assert!(matches!(err, RotationError::NotPending(_)), "{err}");
    assert!(err.to_string().contains("AWSPENDING"));
    fx.store.set_rotation_enabled(false).await.unwrap();
    let keys = live_keys(&fx.sim);
    let meta = fx.store.describe().await.unwrap();
    for step in Step::ALL {
        let err = run_step(r, &fx.store, step, &token(1)).await.unwrap_err();
        assert!(matches!(err, RotationError::RotationDisabled), "{err}");
        assert_eq!(err.to_string(), "rotation is not enabled for the secret");
    }
    assert_eq!(fx.store.describe().await.unwrap(), meta, "nothing changed");
    assert_eq!(live_keys(&fx.sim), keys);
    assert_ne!(before, meta);
    // An unknown step name.
    let ev: aws_lambda_events::secretsmanager::SecretsManagerSecretRotationEvent =
        serde_json::from_value(serde_json::json!({
            "Step": "dropSecret", "SecretId": "herald/twilio", "ClientRequestToken": token(1)
        }))
        .unwrap();
    assert!(matches!(
        credential_rotation::handle(r, &fx.store, &ev).await,
        Err(RotationError::UnknownStep)
    ));
}

/// Secrets Manager's configuration test (a rotation schedule with `RotateImmediatelyOnUpdate:
/// false`): testSecret alone, on an empty AWSPENDING version, must pass and change nothing.
#[tokio::test]
async fn the_configuration_test_on_an_empty_pending_version_passes_and_changes_nothing() {
    let fx = fixture().await;
    let r = &fx.rotator;
    fx.store.start_rotation(&token(1)).await.unwrap();
    let meta = fx.store.describe().await.unwrap();
    let keys = live_keys(&fx.sim);
    let outcome = run_step(r, &fx.store, Step::Test, &token(1)).await.unwrap();
    assert_eq!(outcome, Outcome::Unchanged);
    assert_eq!(fx.store.describe().await.unwrap(), meta, "nothing changed");
    assert_eq!(live_keys(&fx.sim), keys, "no key made or revoked");
    // A real rotation with that token still runs to the end.
    rotate_twice_each(r, &fx.store, &token(1)).await;
    assert_ne!(live_keys(&fx.sim), keys);
}

#[tokio::test]
async fn the_event_drives_the_steps() {
    let fx = fixture().await;
    fx.store.start_rotation(&token(1)).await.unwrap();
    for step in Step::ALL {
        let ev: aws_lambda_events::secretsmanager::SecretsManagerSecretRotationEvent =
            serde_json::from_value(serde_json::json!({
                "Step": step.name(),
                "SecretId": "arn:aws:secretsmanager:us-east-1:123456789012:secret:herald/twilio",
                "ClientRequestToken": token(1)
            }))
            .unwrap();
        credential_rotation::handle(&fx.rotator, &fx.store, &ev)
            .await
            .unwrap();
    }
    assert!(
        fx.store
            .describe()
            .await
            .unwrap()
            .has_stage(&token(1), AWSCURRENT)
    );
}

#[test]
fn configuration_is_read_and_checked() {
    let c = RotationConfig::from_lookup(|_| None).unwrap();
    assert_eq!(c.mode, RotationMode::ApiKey);
    assert_eq!(c.accounts_base_url, "https://accounts.twilio.com");
    assert_eq!(c.grace_ms, 300_000);
    let c = RotationConfig::from_lookup(|k| match k {
        "ROTATION_MODE" => Some("auth-token".into()),
        "AUTH_TOKEN_GRACE_SECS" => Some("5".into()),
        "TWILIO_ACCOUNTS_BASE_URL" => Some("http://127.0.0.1:9".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(
        (c.mode, c.grace_ms, c.accounts_base_url.as_str()),
        (RotationMode::AuthToken, 5_000, "http://127.0.0.1:9")
    );
    let err =
        RotationConfig::from_lookup(|k| (k == "ROTATION_MODE").then(|| "both".into())).unwrap_err();
    assert!(err.contains("ROTATION_MODE"));
    let err =
        RotationConfig::from_lookup(|k| (k == "AUTH_TOKEN_GRACE_SECS").then(|| "soon".into()))
            .unwrap_err();
    assert!(err.contains("AUTH_TOKEN_GRACE_SECS"));
}
