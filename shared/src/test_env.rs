//! A test environment for handlers (feature `test-util`): the services over an in-memory SQLite
//! store and a local key, with the Twilio simulator on a loopback port and a manual clock.
//! Handlers are called with real API Gateway events, without any server.

use std::sync::Arc;

use crate::adapters::embedded::{LocalKeyService, MemorySecretSource, SqliteQueue, SqliteStore};
use crate::apigw::{HttpRequest, event_v2};
use crate::ports::{ManualClock, TwilioCredentials};
use crate::service::{Adapters, Services};
use crate::{Config, Secret};

/// The webhook base URL the test environment configures.
pub const WEBHOOK_BASE: &str = "https://hooks.example.test/prod";

/// Everything a handler test needs.
pub struct TestEnv {
    /// The services handed to handlers.
    pub services: Arc<Services>,
    /// The Twilio simulator (callbacks held until flushed).
    pub sim: twilio_sim::SimHandle,
    /// The store, for inspection.
    pub store: SqliteStore,
    /// The clock the services use.
    pub clock: Arc<ManualClock>,
    /// The credentials the simulator accepts.
    pub creds: TwilioCredentials,
    /// The secret source the services read (swap it to rotate).
    pub secrets: Arc<MemorySecretSource>,
    /// The send queue (batches).
    pub send_queue: SqliteQueue,
    /// The retry queue.
    pub retry_queue: SqliteQueue,
    config: Config,
    adapters: Adapters,
}

fn hex32(seed: u8) -> String {
    format!("{seed:02x}").repeat(16)
}

impl TestEnv {
    /// Starts an environment whose status callbacks are lost: they go to a loopback port no one
    /// listens on, so Twilio (the simulator) moves records on and Herald never hears of it, as
    /// when Herald's webhook endpoint is down. `env` overrides configuration variables.
    pub async fn start_losing_callbacks(env: &[(&str, &str)]) -> Self {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a loopback port");
        let base = format!("http://{closed}");
        let mut vars = vec![("TWILIO_WEBHOOK_BASE_URL", base.as_str())];
        vars.extend_from_slice(env);
        Self::start_with(&vars).await
    }

    /// Starts an environment; `env` overrides configuration variables.
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        // Metrics are stdout lines for CloudWatch on Lambda; in tests they are only noise.
        crate::telemetry::set_metrics_output(crate::telemetry::MetricsOutput::Off);
        let creds = TwilioCredentials {
            account_sid: format!("AC{}", hex32(0xa1)),
            api_key_sid: format!("SK{}", hex32(0xb2)),
            api_key_secret: Secret::new("test-key-secret".into()),
            auth_token: Secret::new("test-auth-token".into()),
            previous_auth_token: None,
            previous_valid_until_ms: None,
        };
        let mut sim_cfg = twilio_sim::SimConfig::new(
            creds.account_sid.clone(),
            creds.auth_token.expose().clone(),
        );
        sim_cfg.api_keys = vec![(
            creds.api_key_sid.clone(),
            creds.api_key_secret.expose().clone(),
        )];
        sim_cfg.callback_mode = twilio_sim::CallbackMode::Manual;
        sim_cfg.seed = 42;
        // One clock for Herald and the simulator, so Twilio's timestamps agree with Herald's.
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let sim_clock = clock.clone();
        sim_cfg.clock =
            twilio_sim::SimClock::from_fn(move || crate::ports::Clock::now_ms(&*sim_clock));
        let sim = twilio_sim::Simulator::start(sim_cfg)
            .await
            .expect("simulator starts");
        let base = [
            ("TWILIO_ACCOUNT_SID", creds.account_sid.clone()),
            ("TWILIO_FROM_NUMBER", "+15005550006".to_owned()),
            ("TWILIO_WEBHOOK_BASE_URL", WEBHOOK_BASE.to_owned()),
            ("TWILIO_API_BASE_URL", sim.base_url()),
            ("TWILIO_REQUEST_TIMEOUT_SECS", "2".to_owned()),
            // Tests text numbers of many countries; the allow-list has tests of its own.
            ("ALLOWED_COUNTRIES", "*".to_owned()),
        ];
        let config = Config::from_lookup(|k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
                .or_else(|| base.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
        })
        .expect("test configuration is valid");
        let store = SqliteStore::in_memory(clock.clone()).expect("in-memory store");
        let secrets = Arc::new(MemorySecretSource::new(creds.clone()));
        let send_queue = SqliteQueue::in_memory("send", 5, clock.clone()).expect("queue");
        let retry_queue = send_queue.sibling("retry", 5).expect("queue");
        let adapters = Adapters {
            messages: Arc::new(store.clone()),
            calls: Arc::new(store.clone()),
            events: Arc::new(store.clone()),
            opt_outs: Arc::new(store.clone()),
            keyring: Arc::new(store.clone()),
            keys: Arc::new(LocalKeyService::from_key(&[7; 32])),
            secrets: secrets.clone(),
            send_queue: Arc::new(send_queue.clone()),
            retry_queue: Arc::new(retry_queue.clone()),
            clock: clock.clone(),
            protection: Arc::new(store.clone()),
            sid_owners: Arc::new(store.clone()),
        };
        let services =
            Arc::new(Services::new(config.clone(), adapters.clone()).expect("services build"));
        Self {
            services,
            sim,
            store,
            clock,
            creds,
            secrets,
            send_queue,
            retry_queue,
            config,
            adapters,
        }
    }

    /// Services over the same adapters whose senders "die" after claiming an attempt, or after
    /// Twilio accepted it, with these probabilities (failure injection).
    pub fn services_with_chaos(
        &self,
        crash_after_claim: f64,
        crash_after_send: f64,
    ) -> Arc<Services> {
        self.services_failing(None, crash_after_claim, crash_after_send)
    }

    /// Services over the same adapters whose send requests die at `point` (failure injection;
    /// with [`TestEnv::services_with_chaos`]'s probabilities too).
    pub fn services_with_crash(
        &self,
        point: crate::service::CrashPoint,
        crash_after_claim: f64,
        crash_after_send: f64,
    ) -> Arc<Services> {
        self.services_failing(Some(point), crash_after_claim, crash_after_send)
    }

    fn services_failing(
        &self,
        crash_at: Option<crate::service::CrashPoint>,
        crash_after_claim: f64,
        crash_after_send: f64,
    ) -> Arc<Services> {
        let mut s =
            Services::new(self.config.clone(), self.adapters.clone()).expect("services build");
        s.chaos = crate::service::Chaos {
            crash_after_claim,
            crash_after_send,
            crash_at,
            legacy_match: false,
        };
        Arc::new(s)
    }

    /// Services over this environment's adapters as changed by `wrap` (tests that record or
    /// inject at the ports, such as the deployment checks in `infra/tests`).
    pub fn services_with(&self, wrap: impl FnOnce(Adapters) -> Adapters) -> Arc<Services> {
        Arc::new(
            Services::new(self.config.clone(), wrap(self.adapters.clone()))
                .expect("services build"),
        )
    }

    /// Starts an environment with the default configuration.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts an environment whose Twilio client gives up after 1 s, before a request held by
    /// [`faults_lost_answer`] is answered.
    pub async fn start_impatient() -> Self {
        Self::start_with(&[("TWILIO_REQUEST_TIMEOUT_SECS", "1")]).await
    }

    /// Runs the retry queue through `handler` (the services and each event) as its event source
    /// would ([`drain`], with [`RETRY_VISIBILITY_SECS`]), until no job is visible; returns how
    /// many jobs ran.
    pub async fn run_retries<F, Fut, E>(&self, handler: F) -> usize
    where
        F: Fn(Arc<Services>, aws_lambda_events::sqs::SqsEvent) -> Fut,
        Fut: std::future::Future<Output = Result<aws_lambda_events::sqs::SqsBatchResponse, E>>,
    {
        drain(&self.retry_queue, RETRY_VISIBILITY_SECS, |e| {
            handler(self.services.clone(), e)
        })
        .await
    }

    /// The stored record `id` of kind `R` ([`crate::domain::Message`] or
    /// [`crate::domain::Call`]); panics when there is none.
    pub async fn record<R>(&self, id: &str) -> R
    where
        R: crate::domain::Attempted,
        R::Id: std::str::FromStr,
        <R::Id as std::str::FromStr>::Err: std::fmt::Debug,
        SqliteStore: crate::ports::Records<R>,
    {
        let id: R::Id = id.parse().expect("a record id");
        crate::ports::Records::<R>::get_record(&self.store, &id)
            .await
            .expect("the store reads")
            .expect("the record exists")
    }

    /// The timeline of record `id`: its events, oldest first.
    pub async fn timeline(&self, id: &str) -> Vec<crate::domain::Event> {
        self.services
            .events
            .events_for(&crate::domain::Subject(id.to_owned()))
            .await
            .expect("the events read")
    }

    /// Asserts record `id`'s timeline holds an [`crate::domain::EventKind::AmbiguousReconcile`]
    /// event: an attempt could not tell which Twilio resource was its own and made another.
    /// `why` leads the failure message, with the timeline.
    pub async fn assert_reconciled_ambiguously(&self, id: &str, why: &str) {
        let timeline = self.timeline(id).await;
        let reconciled = timeline
            .iter()
            .any(|e| e.kind == crate::domain::EventKind::AmbiguousReconcile);
        assert!(reconciled, "{why}: {timeline:?}");
    }

    /// Which record's attempt owns the Twilio resource `sid`, if any.
    pub async fn sid_owner(&self, sid: &str) -> Option<crate::ports::SidOwner> {
        self.services
            .sid_owners
            .twilio_sid_owner(sid)
            .await
            .expect("the owner reads")
    }

    /// Runs `during` while Twilio (the simulator) fails with `faults`, then lets it answer
    /// normally again; returns what `during` returned.
    pub async fn with_faults<T>(
        &self,
        faults: twilio_sim::Faults,
        during: impl std::future::Future<Output = T>,
    ) -> T {
        self.sim.set_faults(faults);
        let out = during.await;
        self.sim.set_faults(twilio_sim::Faults::default());
        out
    }
}

/// Visibility timeout of the retry queue's test event source ([`TestEnv::run_retries`]): longer
/// than the attempt lease.
pub const RETRY_VISIBILITY_SECS: u32 = 61;

/// Twilio answers every request 500: a create's outcome is unknown.
pub fn faults_500() -> twilio_sim::Faults {
    twilio_sim::Faults {
        rate_500: 1.0,
        ..Default::default()
    }
}

/// Twilio accepts every create but answers only after 3 s, longer than the client of a
/// [`TestEnv::start_impatient`] environment waits: the answer is lost, the resource exists.
pub fn faults_lost_answer() -> twilio_sim::Faults {
    twilio_sim::Faults {
        rate_timeout: 1.0,
        timeout_ms: 3_000,
        timeout_after_accept: true,
        ..Default::default()
    }
}

/// The caller [`request`] authenticates as (the JWT `sub` of its authorizer context).
pub const TEST_CALLER: &str = "test-caller";

/// A `lambda_http` request, built through a real API Gateway v2 event, from [`TEST_CALLER`].
pub fn request(
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> lambda_http::Request {
    request_as(Some(TEST_CALLER), method, path_and_query, headers, body)
}

/// As [`request`], from `caller` (`None`: no identity, as without a valid token).
pub fn request_as(
    caller: Option<&str>,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> lambda_http::Request {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let req = HttpRequest {
        method,
        path,
        query,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        body,
    };
    let mut event = event_v2(&req, "test-request", 0);
    if let Some(caller) = caller {
        crate::apigw::with_jwt_subject(&mut event, caller);
    }
    crate::apigw::read_request(&event.to_string()).expect("event decodes")
}

/// A JSON request.
pub fn json_request(method: &str, path: &str, body: &serde_json::Value) -> lambda_http::Request {
    request(
        method,
        path,
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// Status and JSON body of a handler's response.
pub fn read(resp: &lambda_http::Response<lambda_http::Body>) -> (u16, serde_json::Value) {
    let body: &[u8] = resp.body().as_ref();
    (
        resp.status().as_u16(),
        serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
    )
}

/// The `field` (`kind`, `status`) of each entry of a record view's timeline that has one, oldest
/// first.
pub fn timeline_field<'a>(view: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    view["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e[field].as_str())
        .collect()
}

/// `POST path` of the JSON `body` to `handler` (a function's API handler) over `svc`: the status
/// and JSON body of its response ([`read`]); panics when the handler fails.
pub async fn post_json<'a, F, Fut, E>(
    handler: F,
    svc: &'a Services,
    path: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value)
where
    F: FnOnce(&'a Services, lambda_http::Request) -> Fut,
    Fut: std::future::Future<Output = Result<lambda_http::Response<lambda_http::Body>, E>>,
    E: std::fmt::Debug,
{
    let resp = handler(svc, json_request("POST", path, body))
        .await
        .expect("the handler answers");
    read(&resp)
}

/// Runs `handler` over `queue` as Lambda's event source would, until no job is visible: batches
/// of up to 10, jobs deleted unless reported failed; a failed invocation deletes nothing.
/// Returns how many jobs were handed to the handler. Time does not move: jobs delayed or hidden
/// become visible only when the test advances the clock.
pub async fn drain<F, Fut, E>(
    queue: &crate::adapters::embedded::SqliteQueue,
    visibility_timeout_secs: u32,
    handler: F,
) -> usize
where
    F: Fn(aws_lambda_events::sqs::SqsEvent) -> Fut,
    Fut: std::future::Future<Output = Result<aws_lambda_events::sqs::SqsBatchResponse, E>>,
{
    use crate::ports::Queue;
    let mut handled = 0;
    loop {
        let jobs = queue
            .receive(10, visibility_timeout_secs)
            .await
            .expect("receive");
        if jobs.is_empty() {
            return handled;
        }
        handled += jobs.len();
        if let Ok(resp) = handler(crate::sqs::event_for(queue.name(), &jobs)).await {
            for j in &jobs {
                if !resp
                    .batch_item_failures
                    .iter()
                    .any(|f| f.item_identifier == j.message_id)
                {
                    queue.delete(&j.receipt).await.expect("delete");
                }
            }
        }
    }
}
