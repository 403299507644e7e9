//! The whole of Herald on one machine: the embedded adapters, the Twilio simulator, the
//! functions' handlers behind the local API Gateway, and the SQS event sources that drive
//! `send-sms` (send queue) and `retry-processor` (retry queue), in one process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use herald::adapters::embedded::{
    FileSecretSource, LocalKeyService, SqliteQueue, SqliteSecretStore, SqliteStore,
};
use herald::ports::{Clock, SecretSource, SystemClock, TwilioCredentials};
use herald::service::{Adapters, Chaos, Services};
use herald::{Config, Secret};

use crate::event_source::{self, MappingOptions, MappingStats, SqsHandler};
use crate::gateway::{Handler, Routes};

/// The sender the local stack uses: Twilio's magic number that always passes.
pub const LOCAL_FROM_NUMBER: &str = "+15005550006";

/// The name of the Twilio secret in the local database.
pub const SECRET_NAME: &str = "herald/twilio";

/// The version id of the secret's first version.
pub const FIRST_VERSION: &str = "00000000-0000-0000-0000-000000000001";

/// A job is received this many times before it moves to the dead-letter queue.
pub const MAX_RECEIVE_COUNT: u32 = 5;

/// How to start the local stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Where the database, master key and local secret live.
    pub data_dir: PathBuf,
    /// The gateway's port (0: the OS picks).
    pub port: u16,
    /// The simulator's seed.
    pub seed: u64,
    /// Configuration variables set for this stack (over the process environment).
    pub env: Vec<(String, String)>,
    /// Failure injection (the soak).
    pub crash_after_claim: f64,
    /// Failure injection (the soak).
    pub crash_after_send: f64,
    /// Handler invocations at once, per queue.
    pub concurrency: usize,
    /// How often the sweeper runs, and how overdue a message must be for it.
    pub sweep_every: Duration,
    /// Bearer API keys `(key, caller)` the local gateway accepts, besides the stack's own key
    /// ([`LocalStack::api_key`]) and those of `HERALD_API_KEYS` (`caller=key,…`).
    pub api_keys: Vec<(String, String)>,
    /// The simulator's delay before each status callback.
    pub callback_latency_ms: u64,
    /// The simulator's time between signing a status callback and posting it.
    pub callback_in_flight_ms: u64,
    /// How long the previous auth token is accepted after a rotation promotes a new one.
    pub auth_token_grace: Duration,
    /// Send to this Twilio instead of the stack's own simulator (`herald soak`: the simulator
    /// lives in the soak's process, so its state and SIDs survive the kills of this one). The
    /// stack's simulator still starts, unused.
    pub twilio_api_base_url: Option<String>,
    /// [`Chaos::legacy_match`]: the soak's control run only.
    pub legacy_match: bool,
}

impl StackOptions {
    /// Defaults for a local stack in `data_dir`: retries after a second or two, a short lease.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            port: 0,
            seed: 1,
            env: [
                ("RETRY_BASE_DELAY_SECS", "1"),
                ("RETRY_MAX_DELAY_SECS", "2"),
                ("TWILIO_REQUEST_TIMEOUT_SECS", "2"),
                ("TWILIO_CONNECT_TIMEOUT_SECS", "1"),
                ("ATTEMPT_LEASE_SECS", "5"),
                // The demo and the tests text UK (+44, the demo's number is in Guernsey's
                // range) and French numbers too.
                ("ALLOWED_COUNTRIES", "US,CA,GB,GG,JE,IM,FR"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            crash_after_claim: 0.0,
            crash_after_send: 0.0,
            concurrency: 2,
            sweep_every: Duration::from_secs(10),
            api_keys: Vec::new(),
            callback_latency_ms: 0,
            callback_in_flight_ms: 0,
            auth_token_grace: Duration::from_secs(
                credential_rotation::DEFAULT_AUTH_TOKEN_GRACE_SECS,
            ),
            twilio_api_base_url: None,
            legacy_match: false,
        }
    }
}

/// The caller the stack's own API key stands for.
pub const LOCAL_CALLER: &str = "local";

/// The stack's API key, made on first use and kept in the data folder (mode 0600).
fn local_api_key(path: &Path) -> std::io::Result<String> {
    if let Ok(k) = std::fs::read_to_string(path)
        && k.trim().len() >= 32
    {
        return Ok(k.trim().to_owned());
    }
    let key = format!("hk_{}{}", hex32(), hex32());
    let mut file = herald::adapters::embedded::private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    std::io::Write::write_all(&mut file, key.as_bytes())?;
    Ok(key)
}

/// `HERALD_API_KEYS`: `caller=key` pairs separated by commas.
fn env_api_keys() -> Vec<(String, String)> {
    std::env::var("HERALD_API_KEYS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| {
            let (caller, key) = pair.split_once('=')?;
            let (caller, key) = (caller.trim(), key.trim());
            (!caller.is_empty() && key.len() >= 16).then(|| (key.to_owned(), caller.to_owned()))
        })
        .collect()
}

/// A running local stack.
pub struct LocalStack {
    /// The services the handlers share.
    pub services: Arc<Services>,
    /// The Twilio simulator.
    pub sim: twilio_sim::SimHandle,
    /// The local API Gateway's base URL (`http://127.0.0.1:PORT`).
    pub api_url: String,
    /// A bearer API key the gateway accepts, for caller [`LOCAL_CALLER`].
    pub api_key: String,
    /// The store (for inspection).
    pub store: SqliteStore,
    /// The send queue.
    pub send_queue: SqliteQueue,
    /// The retry queue.
    pub retry_queue: SqliteQueue,
    /// Counters of the send queue's event source.
    pub send_stats: Arc<MappingStats>,
    /// Counters of the retry queue's event source.
    pub retry_stats: Arc<MappingStats>,
    /// The Twilio secret, versioned (`AWSCURRENT` …): what the services read and the rotation
    /// rotates.
    pub secrets: SqliteSecretStore,
    /// The rotation function, pointed at the simulator.
    pub rotator: credential_rotation::Rotator,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn hex32() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The local Twilio credentials of a stack in `data_dir`, made on first use and kept there
/// (what [`LocalStack::start`] gives its simulator, or another process's: `herald soak`).
pub fn credentials(data_dir: &Path) -> std::io::Result<TwilioCredentials> {
    std::fs::create_dir_all(data_dir)?;
    local_credentials(&data_dir.join("twilio-secret.json"))
}

/// The local Twilio credentials, made on first use and kept in the data folder.
fn local_credentials(path: &Path) -> std::io::Result<TwilioCredentials> {
    if let Ok(bytes) = std::fs::read(path)
        && let Ok(creds) = serde_json::from_slice::<TwilioCredentials>(&bytes)
    {
        return Ok(creds);
    }
    let creds = TwilioCredentials {
        account_sid: format!("AC{}", hex32()),
        api_key_sid: format!("SK{}", hex32()),
        api_key_secret: Secret::new(hex32()),
        auth_token: Secret::new(hex32()),
        previous_auth_token: None,
        previous_valid_until_ms: None,
    };
    FileSecretSource::write(path, &creds)?;
    Ok(creds)
}

fn handler<F, Fut>(svc: Arc<Services>, f: F) -> Handler
where
    F: Fn(Arc<Services>, lambda_http::Request) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<
            Output = Result<lambda_http::Response<lambda_http::Body>, lambda_http::Error>,
        > + Send
        + 'static,
{
    Arc::new(move |req| Box::pin(f(svc.clone(), req)))
}

fn sqs_handler<F, Fut>(svc: Arc<Services>, f: F) -> SqsHandler
where
    F: Fn(Arc<Services>, aws_lambda_events::sqs::SqsEvent) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<
            Output = Result<aws_lambda_events::sqs::SqsBatchResponse, lambda_runtime::Error>,
        > + Send
        + 'static,
{
    Arc::new(move |ev| Box::pin(f(svc.clone(), ev)))
}

impl LocalStack {
    /// Starts the simulator, the store, the queues, the gateway, the event sources and the
    /// sweeper.
    pub async fn start(
        opts: &StackOptions,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        std::fs::create_dir_all(&opts.data_dir)?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let db = opts.data_dir.join("herald.db");
        // The secret lives versioned in the database; its first version comes from the local
        // credentials file.
        let secrets = SqliteSecretStore::open(&db, SECRET_NAME, clock.clone())?;
        let first = local_credentials(&opts.data_dir.join("twilio-secret.json"))?;
        secrets
            .create_if_absent(FIRST_VERSION, &serde_json::to_string(&first)?)
            .await?;
        let creds = secrets.current().await?;
        let previous_key =
            herald::ports::SecretVersions::get_by_stage(&secrets, herald::ports::AWSPREVIOUS)
                .await?
                .and_then(|v| herald::twilio::credentials::parse_credentials(v.text.expose()).ok())
                .filter(|p| p.api_key_sid != creds.api_key_sid);

        let mut sim_cfg = twilio_sim::SimConfig::new(
            creds.account_sid.clone(),
            creds.auth_token.expose().clone(),
        );
        sim_cfg.api_keys = vec![(
            creds.api_key_sid.clone(),
            creds.api_key_secret.expose().clone(),
        )];
        // The previous version's key is still valid at Twilio until the next rotation.
        sim_cfg.api_keys.extend(
            previous_key.map(|p| (p.api_key_sid.clone(), p.api_key_secret.expose().clone())),
        );
        sim_cfg.seed = opts.seed;
        sim_cfg.callback_latency_ms = opts.callback_latency_ms;
        sim_cfg.callback_in_flight_ms = opts.callback_in_flight_ms;
        let sim = twilio_sim::Simulator::start(sim_cfg).await?;

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port)).await?;
        let api_url = format!("http://{}", listener.local_addr()?);

        let mut env: Vec<(String, String)> = vec![
            ("TWILIO_ACCOUNT_SID".into(), creds.account_sid.clone()),
            ("TWILIO_FROM_NUMBER".into(), LOCAL_FROM_NUMBER.to_owned()),
            ("TWILIO_WEBHOOK_BASE_URL".into(), api_url.clone()),
            (
                "TWILIO_API_BASE_URL".into(),
                opts.twilio_api_base_url
                    .clone()
                    .unwrap_or_else(|| sim.base_url()),
            ),
        ];
        env.extend(opts.env.iter().cloned());
        let config = Config::from_lookup(|k| {
            env.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(k).ok())
        })?;
        let visibility_timeout_secs =
            u32::try_from(config.attempt_lease.as_secs()).unwrap_or(60) + 1;

        let store = SqliteStore::open(&db, clock.clone())?;
        let send_queue = SqliteQueue::open(&db, "send", MAX_RECEIVE_COUNT, clock.clone())?;
        let retry_queue = send_queue.sibling("retry", MAX_RECEIVE_COUNT)?;
        let adapters = Adapters {
            messages: Arc::new(store.clone()),
            calls: Arc::new(store.clone()),
            events: Arc::new(store.clone()),
            opt_outs: Arc::new(store.clone()),
            keyring: Arc::new(store.clone()),
            keys: Arc::new(LocalKeyService::load_or_create(
                &opts.data_dir.join("master.key"),
            )?),
            secrets: Arc::new(secrets.clone()),
            send_queue: Arc::new(send_queue.clone()),
            retry_queue: Arc::new(retry_queue.clone()),
            clock: clock.clone(),
            protection: Arc::new(store.clone()),
            sid_owners: Arc::new(store.clone()),
        };
        let rotator = credential_rotation::Rotator::new(
            &credential_rotation::RotationConfig {
                api_base_url: sim.base_url(),
                accounts_base_url: sim.base_url(),
                mode: credential_rotation::RotationMode::ApiKey,
                grace_ms: i64::try_from(opts.auth_token_grace.as_millis()).unwrap_or(i64::MAX),
                request_timeout: config.request_timeout,
            },
            clock,
        )?;
        let mut services = Services::new(config, adapters)?;
        services.chaos = Chaos {
            crash_after_claim: opts.crash_after_claim,
            crash_after_send: opts.crash_after_send,
            crash_at: None,
            legacy_match: opts.legacy_match,
        };
        let services = Arc::new(services);

        let api_key = local_api_key(&opts.data_dir.join("api-key"))?;
        let mut api_keys: std::collections::HashMap<String, String> =
            env_api_keys().into_iter().collect();
        api_keys.extend(opts.api_keys.iter().cloned());
        api_keys.insert(api_key.clone(), LOCAL_CALLER.to_owned());
        // `/health` and the rest of `/v1/` share the one send-sms handler.
        let send_sms_handler = handler(services.clone(), |s, r| async move {
            send_sms::handle(&s, r).await
        });
        let routes = Routes {
            api_keys: Arc::new(api_keys),
            routes: vec![
                ("/health", "send-sms", send_sms_handler.clone()),
                (
                    "/v1/calls",
                    "place-call",
                    handler(services.clone(), |s, r| async move {
                        place_call::handle(&s, r).await
                    }),
                ),
                ("/v1/", "send-sms", send_sms_handler),
                (
                    "/webhooks/",
                    "webhook-receiver",
                    handler(services.clone(), |s, r| async move {
                        webhook_receiver::handle(&s, r).await
                    }),
                ),
            ],
        };
        let app = crate::gateway::router(routes);
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "local gateway stopped");
            }
        })];

        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mapping = |name: &str, function: &'static str| MappingOptions {
            name: name.to_owned(),
            function,
            batch_size: 10,
            visibility_timeout_secs,
            concurrency: opts.concurrency,
            idle_poll: Duration::from_millis(20),
        };
        let send_stats = Arc::new(MappingStats::default());
        let retry_stats = Arc::new(MappingStats::default());
        tasks.extend(event_source::spawn(
            Arc::new(send_queue.clone()),
            sqs_handler(services.clone(), |s, e| async move {
                send_sms::handle_sqs(&s, e).await
            }),
            mapping("herald-send", "send-sms"),
            send_stats.clone(),
            stop_rx.clone(),
        ));
        tasks.extend(event_source::spawn(
            Arc::new(retry_queue.clone()),
            sqs_handler(services.clone(), |s, e| async move {
                retry_processor::handle(&s, e).await
            }),
            mapping("herald-retry", "retry-processor"),
            retry_stats.clone(),
            stop_rx.clone(),
        ));
        let (sweeper_svc, every, mut sweeper_stop) = (services.clone(), opts.sweep_every, stop_rx);
        let grace_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = sweeper_stop.changed() => return,
                }
                let span = herald::telemetry::invocation_span(
                    "retry-processor",
                    &ulid::Ulid::new().to_string(),
                );
                let swept = herald::delivery::sweep(&sweeper_svc, grace_ms, 1000);
                if let Err(e) = tracing::Instrument::instrument(swept, span).await {
                    tracing::error!(error = %e, "sweep failed");
                }
            }
        }));
        Ok(Self {
            services,
            sim,
            api_url,
            api_key,
            store,
            send_queue,
            retry_queue,
            send_stats,
            retry_stats,
            secrets,
            rotator,
            stop,
            tasks,
        })
    }

    /// Stops the event sources, the gateway and the simulator.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.abort();
        }
        self.sim.shutdown().await;
    }
}
