//! The whole of Herald on one machine: the embedded adapters, the Twilio simulator, and the
//! functions' handlers behind the local API Gateway, in one process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use herald::adapters::embedded::{FileSecretSource, LocalKeyService, SqliteStore};
use herald::ports::{Clock, SystemClock, TwilioCredentials};
use herald::service::{Adapters, Services};
use herald::{Config, Secret};

use crate::gateway::{Handler, Routes};

/// The sender the local stack uses: Twilio's magic number that always passes.
pub const LOCAL_FROM_NUMBER: &str = "+15005550006";

/// How to start the local stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Where the database, master key and local secret live.
    pub data_dir: PathBuf,
    /// The gateway's port (0: the OS picks).
    pub port: u16,
    /// The simulator's seed.
    pub seed: u64,
}

/// A running local stack.
pub struct LocalStack {
    /// The services the handlers share.
    pub services: Arc<Services>,
    /// The Twilio simulator.
    pub sim: twilio_sim::SimHandle,
    /// The local API Gateway's base URL (`http://127.0.0.1:PORT`).
    pub api_url: String,
    /// The store (for inspection).
    pub store: SqliteStore,
    server: tokio::task::JoinHandle<()>,
}

fn hex32() -> String {
    hex::encode(rand::random::<[u8; 16]>())
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

impl LocalStack {
    /// Starts the simulator, the store and the gateway.
    pub async fn start(
        opts: &StackOptions,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        std::fs::create_dir_all(&opts.data_dir)?;
        let secret_path = opts.data_dir.join("twilio-secret.json");
        let creds = local_credentials(&secret_path)?;

        let mut sim_cfg = twilio_sim::SimConfig::new(
            creds.account_sid.clone(),
            creds.auth_token.expose().clone(),
        );
        sim_cfg.api_keys = vec![(
            creds.api_key_sid.clone(),
            creds.api_key_secret.expose().clone(),
        )];
        sim_cfg.seed = opts.seed;
        let sim = twilio_sim::Simulator::start(sim_cfg).await?;

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port)).await?;
        let api_url = format!("http://{}", listener.local_addr()?);

        let env = [
            ("TWILIO_ACCOUNT_SID", creds.account_sid.clone()),
            ("TWILIO_FROM_NUMBER", LOCAL_FROM_NUMBER.to_owned()),
            ("TWILIO_WEBHOOK_BASE_URL", api_url.clone()),
            ("TWILIO_API_BASE_URL", sim.base_url()),
        ];
        let config = Config::from_lookup(|k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(k).ok())
        })?;

        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = SqliteStore::open(&opts.data_dir.join("herald.db"), clock.clone())?;
        let adapters = Adapters {
            messages: Arc::new(store.clone()),
            events: Arc::new(store.clone()),
            keyring: Arc::new(store.clone()),
            keys: Arc::new(LocalKeyService::load_or_create(
                &opts.data_dir.join("master.key"),
            )?),
            secrets: Arc::new(FileSecretSource::new(secret_path)),
            clock,
        };
        let services = Arc::new(Services::new(config, adapters)?);

        let routes = Routes {
            routes: vec![
                (
                    "/v1/",
                    handler(services.clone(), |s, r| async move {
                        send_sms::handle(&s, r).await
                    }),
                ),
                (
                    "/webhooks/",
                    handler(services.clone(), |s, r| async move {
                        webhook_receiver::handle(&s, r).await
                    }),
                ),
            ],
        };
        let app = crate::gateway::router(routes);
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "local gateway stopped");
            }
        });
        Ok(Self {
            services,
            sim,
            api_url,
            store,
            server,
        })
    }

    /// Stops the gateway and the simulator.
    pub async fn shutdown(self) {
        self.server.abort();
        self.sim.shutdown().await;
    }
}
