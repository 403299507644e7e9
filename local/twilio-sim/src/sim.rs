//! The running simulator: shared state, the HTTP server and the handle tests drive it with.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::callbacks::CallbackJob;
use crate::calls::{CallCallbackRecord, CallJob, SimCall, VoiceRequestKind, VoiceRequestRecord};
use crate::config::{CallOutcome, CallbackMode, Faults, Outcome, SimConfig};
use crate::credentials::{Credentials, SimKey};
use crate::inbound::{InboundRecord, InboundSms};
use crate::model::{CallbackRecord, RequestRecord, SimMessage, by_sid};

/// Work that runs after a create: a message's or a call's progress and callbacks.
#[derive(Debug, Clone)]
pub(crate) enum Job {
    Message(CallbackJob),
    Call(CallJob),
}

/// Runs a job, waiting `latency_ms` before each step.
pub(crate) async fn run_job(inner: &Arc<Inner>, job: Job, latency_ms: u64) {
    match job {
        Job::Message(job) => crate::callbacks::run_job(inner, job, latency_ms).await,
        Job::Call(job) => crate::calls::run_call_job(inner, job, latency_ms).await,
    }
}

/// Mutable state, behind one mutex that is never held across an `.await`.
pub(crate) struct State {
    pub(crate) sid_rng: StdRng,
    pub(crate) fault_rng: StdRng,
    pub(crate) faults: Faults,
    pub(crate) outcomes: HashMap<String, Outcome>,
    pub(crate) call_outcomes: HashMap<String, CallOutcome>,
    /// Per-number outcomes used one per call, before `call_outcomes`.
    pub(crate) call_outcome_queues: HashMap<String, VecDeque<CallOutcome>>,
    pub(crate) creds: Credentials,
    pub(crate) json_callbacks: bool,
    pub(crate) messages: Vec<SimMessage>,
    pub(crate) calls: Vec<SimCall>,
    pub(crate) requests: Vec<RequestRecord>,
    pub(crate) callbacks: Vec<CallbackRecord>,
    pub(crate) call_callbacks: Vec<CallCallbackRecord>,
    pub(crate) voice_requests: Vec<VoiceRequestRecord>,
    pub(crate) inbound: Vec<InboundRecord>,
    /// Numbers that texted STOP (sends to them fail with 21610 until they text START).
    pub(crate) opted_out: HashSet<String>,
    pub(crate) held: VecDeque<Job>,
    /// [`SimHandle::gate_requests`]: REST requests wait here until enough are waiting.
    pub(crate) gate: Option<Arc<tokio::sync::Barrier>>,
}

impl State {
    pub(crate) fn new_sid(&mut self, prefix: &str) -> String {
        format!("{prefix}{:032x}", self.sid_rng.random::<u128>())
    }

    pub(crate) fn message_mut(&mut self, sid: &str) -> Option<&mut SimMessage> {
        self.messages.iter_mut().find(|m| m.sid == sid)
    }
}

/// Shared by the server, the callback tasks and every handle.
pub(crate) struct Inner {
    pub(crate) account_sid: String,
    pub(crate) clock: crate::config::SimClock,
    pub(crate) callback_latency_ms: u64,
    pub(crate) callback_in_flight_ms: u64,
    pub(crate) callback_mode: CallbackMode,
    pub(crate) state: Mutex<State>,
    /// Callback jobs scheduled or running (held Manual-mode jobs are not counted).
    pub(crate) busy: watch::Sender<usize>,
    /// Becomes `true` at shutdown: releases held responses and stops the server.
    pub(crate) stopping: watch::Sender<bool>,
    pub(crate) tasks: Mutex<JoinSet<()>>,
    pub(crate) http: reqwest::Client,
    /// [`SimConfig::deliver_to`](crate::SimConfig::deliver_to).
    pub(crate) deliver_to: Vec<(String, String)>,
}

impl Inner {
    /// Where a request for `url` really goes: `(url to request, Host header to send)`; the
    /// Host is `None` when `url` matches no `deliver_to` prefix (it is requested as is).
    pub(crate) fn delivery_target(&self, url: &str) -> (String, Option<String>) {
        for (prefix, local) in &self.deliver_to {
            if let Some(rest) = url.strip_prefix(prefix.as_str()) {
                let host = url::Url::parse(url).ok().and_then(|u| {
                    u.host_str().map(|h| match u.port() {
                        Some(port) => format!("{h}:{port}"),
                        None => h.to_string(),
                    })
                });
                return (format!("{}{rest}", local.trim_end_matches('/')), host);
            }
        }
        (url.to_string(), None)
    }

    /// Now, with whole seconds.
    pub(crate) fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every update is one step).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues (Manual) or starts (Immediate) the callbacks of a new message.
    pub(crate) fn schedule(self: &Arc<Self>, job: Job) {
        match self.callback_mode {
            CallbackMode::Manual => self.lock().held.push_back(job),
            CallbackMode::Immediate => {
                let guard = BusyGuard::new(self);
                let inner = Arc::clone(self);
                let latency = self.callback_latency_ms;
                let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
                while tasks.try_join_next().is_some() {}
                tasks.spawn(async move {
                    let _guard = guard;
                    run_job(&inner, job, latency).await;
                });
            }
        }
    }

    /// Resolves once shutdown has begun.
    pub(crate) async fn stopped(&self) {
        let mut rx = self.stopping.subscribe();
        // An error means the sender is gone, which only happens when everything is dropped.
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Counts a callback job as busy until dropped (also on abort or panic).
pub(crate) struct BusyGuard(Arc<Inner>);

impl BusyGuard {
    pub(crate) fn new(inner: &Arc<Inner>) -> Self {
        inner.busy.send_modify(|n| *n += 1);
        Self(Arc::clone(inner))
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Starts a simulator on `127.0.0.1` with a port the OS picks.
    pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a simulator on the given address (port 0: the OS picks one).
    pub async fn start_on(config: SimConfig, addr: SocketAddr) -> std::io::Result<SimHandle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(15))
            .user_agent("TwilioProxy/1.1")
            .build()
            .map_err(std::io::Error::other)?;
        let inner = Arc::new(Inner {
            clock: config.clock.clone(),
            account_sid: config.account_sid,
            callback_latency_ms: config.callback_latency_ms,
            callback_in_flight_ms: config.callback_in_flight_ms,
            callback_mode: config.callback_mode,
            state: Mutex::new(State {
                sid_rng: StdRng::seed_from_u64(config.seed),
                fault_rng: StdRng::seed_from_u64(config.seed ^ 0x5eed_fa17_0000_0001),
                faults: config.faults,
                outcomes: HashMap::new(),
                call_outcomes: HashMap::new(),
                call_outcome_queues: HashMap::new(),
                creds: Credentials::new(config.auth_token, config.api_keys, config.clock.now()),
                json_callbacks: config.json_callbacks,
                messages: Vec::new(),
                calls: Vec::new(),
                requests: Vec::new(),
                callbacks: Vec::new(),
                call_callbacks: Vec::new(),
                voice_requests: Vec::new(),
                inbound: Vec::new(),
                opted_out: HashSet::new(),
                held: VecDeque::new(),
                gate: None,
            }),
            busy: watch::Sender::new(0),
            stopping: watch::Sender::new(false),
            tasks: Mutex::new(JoinSet::new()),
            http,
            deliver_to: config.deliver_to,
        });
        let app = crate::server::router(Arc::clone(&inner));
        let stop = Arc::clone(&inner);
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.stopped().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "twilio-sim server stopped");
            }
        });
        Ok(SimHandle {
            inner,
            addr,
            server: Arc::new(Mutex::new(Some(server))),
        })
    }
}

/// A running simulator. Clones share it.
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
    addr: SocketAddr,
    server: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`; clients append `/2010-04-01/Accounts/...`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configured account SID.
    pub fn account_sid(&self) -> &str {
        &self.inner.account_sid
    }

    /// The current primary auth token: the callback signing key and the only token HTTP Basic
    /// accepts. It changes when a secondary token is promoted (`POST /v1/AuthTokens/Promote`).
    pub fn auth_token(&self) -> String {
        self.inner.lock().creds.primary.clone()
    }

    /// The secondary auth token, if one was created and not yet promoted or deleted.
    pub fn secondary_auth_token(&self) -> Option<String> {
        self.inner
            .lock()
            .creds
            .secondary
            .as_ref()
            .map(|(t, _)| t.clone())
    }

    /// Every live API key (configured or created through `Keys.json`), secrets included.
    pub fn api_keys(&self) -> Vec<SimKey> {
        self.inner.lock().creds.keys.clone()
    }

    /// Sends status callbacks created from now on as JSON (`true`) or form posts (`false`).
    pub fn set_json_callbacks(&self, json: bool) {
        self.inner.lock().json_callbacks = json;
    }

    /// What happens to calls created from now on for `to_e164` (default: answered, no input).
    pub fn set_call_outcome(&self, to_e164: &str, outcome: CallOutcome) {
        self.inner
            .lock()
            .call_outcomes
            .insert(to_e164.to_string(), outcome);
    }

    /// What happens to the next calls created for `to_e164`, one outcome per call in order
    /// (e.g. busy, then answered); once they are used up, the outcome of
    /// [`set_call_outcome`](Self::set_call_outcome) (or the default) applies again. Replaces
    /// any sequence not used up yet.
    pub fn set_call_outcomes(&self, to_e164: &str, outcomes: Vec<CallOutcome>) {
        self.inner
            .lock()
            .call_outcome_queues
            .insert(to_e164.to_string(), outcomes.into());
    }

    /// Every call created, in creation order.
    pub fn calls(&self) -> Vec<SimCall> {
        self.inner.lock().calls.clone()
    }

    /// One call by SID.
    pub fn call(&self, sid: &str) -> Option<SimCall> {
        by_sid(&self.inner.lock().calls, sid).cloned()
    }

    /// How many calls were created for `to` (duplicate-call detection).
    pub fn creates_for_call(&self, to: &str) -> usize {
        let state = self.inner.lock();
        state.calls.iter().filter(|c| c.to == to).count()
    }

    /// Every call status callback attempt, in order.
    pub fn call_callbacks(&self) -> Vec<CallCallbackRecord> {
        self.inner.lock().call_callbacks.clone()
    }

    /// Every TwiML request of calls (`Url` fetches and `<Gather>` submissions), in order.
    pub fn voice_requests(&self) -> Vec<VoiceRequestRecord> {
        self.inner.lock().voice_requests.clone()
    }

    /// Every `<Gather action>` submission and the TwiML it was answered with, in order.
    pub fn gathers(&self) -> Vec<VoiceRequestRecord> {
        self.inner
            .lock()
            .voice_requests
            .iter()
            .filter(|r| r.kind == VoiceRequestKind::Gather)
            .cloned()
            .collect()
    }

    /// POSTs a signed inbound-SMS webhook to `webhook_url`, as Twilio does when `from` texts
    /// `to`, and returns the (last) attempt: the receiver's HTTP status and TwiML answer.
    /// STOP-like keywords opt `from` out (later sends to it fail with 21610); START-like ones
    /// opt it back in.
    pub async fn send_inbound_sms(
        &self,
        from: &str,
        to: &str,
        body: &str,
        webhook_url: &str,
    ) -> InboundRecord {
        self.send_inbound(InboundSms {
            from: from.to_string(),
            to: to.to_string(),
            body: body.to_string(),
            url: webhook_url.to_string(),
            messaging_service_sid: None,
        })
        .await
    }

    /// Like [`send_inbound_sms`](Self::send_inbound_sms), with every field (Messaging Service).
    pub async fn send_inbound(&self, sms: InboundSms) -> InboundRecord {
        crate::inbound::deliver(&self.inner, sms).await
    }

    /// Every inbound-SMS webhook attempt, in order.
    pub fn inbound(&self) -> Vec<InboundRecord> {
        self.inner.lock().inbound.clone()
    }

    /// Whether `number` has opted out (texted STOP and not START since).
    pub fn is_opted_out(&self, number: &str) -> bool {
        self.inner.lock().opted_out.contains(number)
    }

    /// What happens to messages created from now on for `to_e164` (default: delivered).
    pub fn set_outcome(&self, to_e164: &str, outcome: Outcome) {
        self.inner
            .lock()
            .outcomes
            .insert(to_e164.to_string(), outcome);
    }

    /// From now on every authenticated REST request is held until `n` are held at once, and then
    /// they are answered together (a barrier, generation after generation). A test uses it to
    /// prove that a client has `n` requests in flight at once: a client that sends one at a
    /// time waits for an answer that never comes (until shutdown). `n` of 0 or 1 holds nothing.
    pub fn gate_requests(&self, n: usize) {
        self.inner.lock().gate = (n > 1).then(|| Arc::new(tokio::sync::Barrier::new(n)));
    }

    /// Replaces the fault rates for requests and messages from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.inner.lock().faults = faults;
    }

    /// The current fault rates.
    pub fn faults(&self) -> Faults {
        self.inner.lock().faults.clone()
    }

    /// Manual mode: delivers every held callback now, in creation order, awaiting each POST
    /// (callbacks of messages and calls created meanwhile included). Returns how many jobs
    /// (messages and calls) ran.
    pub async fn flush_callbacks(&self) -> usize {
        let mut n = 0;
        loop {
            let guard = BusyGuard::new(&self.inner);
            let Some(job) = self.inner.lock().held.pop_front() else {
                drop(guard);
                return n;
            };
            run_job(&self.inner, job, 0).await;
            drop(guard);
            n += 1;
        }
    }

    /// How many messages' and calls' callbacks are held (Manual mode).
    pub fn held_callbacks(&self) -> usize {
        self.inner.lock().held.len()
    }

    /// Immediate mode: resolves when no callback is scheduled or in flight. Held Manual-mode
    /// callbacks do not count (they wait for [`flush_callbacks`](Self::flush_callbacks)).
    pub async fn wait_idle(&self) {
        let mut rx = self.inner.busy.subscribe();
        // The sender lives in `inner`, which `self` keeps alive.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Every message created, in creation order.
    pub fn messages(&self) -> Vec<SimMessage> {
        self.inner.lock().messages.clone()
    }

    /// One message by SID.
    pub fn message(&self, sid: &str) -> Option<SimMessage> {
        by_sid(&self.inner.lock().messages, sid).cloned()
    }

    /// Every REST request received, in arrival order (inspection requests excluded).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.lock().requests.clone()
    }

    /// Every callback POST attempt, in order.
    pub fn callbacks(&self) -> Vec<CallbackRecord> {
        self.inner.lock().callbacks.clone()
    }

    /// How many messages were created for `to` (duplicate-send detection).
    pub fn creates_for(&self, to: &str) -> usize {
        let state = self.inner.lock();
        state.messages.iter().filter(|m| m.to == to).count()
    }

    /// Stops the server: held responses are released, callback tasks are cancelled, and the
    /// call returns once the server has closed its connections.
    pub async fn shutdown(self) {
        self.inner.stopping.send_replace(true);
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .abort_all();
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(server) = server {
            let _ = server.await;
        }
    }
}
