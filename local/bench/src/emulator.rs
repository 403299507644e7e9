//! A minimal Lambda Runtime API emulator on a loopback port, and the measurement of one cold
//! start under it: a command is started with `AWS_LAMBDA_RUNTIME_API` pointing here, and the
//! emulator times exec → first `GET /2018-06-01/runtime/invocation/next` (init) and exec → first
//! answer (`POST …/invocation/{id}/response` or `…/error`), feeds more invocations one at a time,
//! and reads the process's peak RSS (`VmHWM`) before killing it. Whatever the language of the
//! command, it is measured the same way.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Serialize;
use tokio::sync::mpsc;

/// How an invocation was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    /// `POST /2018-06-01/runtime/invocation/{id}/response`.
    Response,
    /// `POST /2018-06-01/runtime/invocation/{id}/error`.
    Error,
    /// `POST /2018-06-01/runtime/init/error`: the function failed to start.
    InitError,
}

/// One answer from the function.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Which endpoint it was posted to.
    pub kind: AnswerKind,
    /// The request id it answers (`init` for an init error).
    pub id: String,
    /// The body posted.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
    /// From the moment the invocation was handed out by `next` to the answer.
    pub duration: Duration,
}

struct Shared {
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Bytes)>>,
    first_next: Mutex<Option<Instant>>,
    handed_out: Mutex<HashMap<String, Instant>>,
    answers: mpsc::UnboundedSender<Answer>,
}

/// A running emulator: queue invocations with [`Emulator::queue`], collect answers with
/// [`Emulator::answer`].
pub struct Emulator {
    /// Where it listens (`AWS_LAMBDA_RUNTIME_API` is `127.0.0.1:PORT`).
    pub addr: SocketAddr,
    invocations: mpsc::UnboundedSender<(String, Bytes)>,
    answers: mpsc::UnboundedReceiver<Answer>,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    next_id: u64,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let arrived = Instant::now();
    s.first_next.lock().expect("lock").get_or_insert(arrived);
    let Some((id, body)) = s.queue.lock().await.recv().await else {
        // The emulator is going away.
        return (StatusCode::GONE, HeaderMap::new(), Bytes::new());
    };
    s.handed_out
        .lock()
        .expect("lock")
        .insert(id.clone(), Instant::now());
    let deadline_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 60_000;
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        headers.insert(
            name,
            HeaderValue::from_str(&value).expect("header values are ASCII"),
        );
    };
    set("lambda-runtime-aws-request-id", id);
    set("lambda-runtime-deadline-ms", deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:herald-bench".into(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0".into(),
    );
    set("content-type", "application/json".into());
    (StatusCode::OK, headers, body)
}

fn record(s: &Shared, kind: AnswerKind, id: String, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let started = s.handed_out.lock().expect("lock").remove(&id).unwrap_or(at);
    let _ = s.answers.send(Answer {
        kind,
        id,
        body,
        at,
        duration: at - started,
    });
    StatusCode::ACCEPTED
}

async fn response(State(s): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    record(&s, AnswerKind::Response, id, body)
}

async fn error(State(s): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    record(&s, AnswerKind::Error, id, body)
}

async fn init_error(State(s): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    record(&s, AnswerKind::InitError, "init".into(), body)
}

impl Emulator {
    /// Starts an emulator on `127.0.0.1`, on a port the OS picks.
    pub async fn start() -> std::io::Result<Self> {
        let (invocations, queue) = mpsc::unbounded_channel();
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(queue),
            first_next: Mutex::new(None),
            handed_out: Mutex::new(HashMap::new()),
            answers: answers_tx,
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            invocations,
            answers,
            shared,
            server,
            next_id: 0,
        })
    }

    /// Queues an invocation with this event; returns its request id.
    pub fn queue(&mut self, event: Bytes) -> String {
        self.next_id += 1;
        let id = format!("bench-{:08}", self.next_id);
        let _ = self.invocations.send((id.clone(), event));
        id
    }

    /// The next answer, if one comes within `timeout`.
    pub async fn answer(&mut self, timeout: Duration) -> Option<Answer> {
        tokio::time::timeout(timeout, self.answers.recv())
            .await
            .ok()
            .flatten()
    }

    /// When the first `next` request arrived, if one has.
    pub fn first_next(&self) -> Option<Instant> {
        *self.shared.first_next.lock().expect("lock")
    }
}

/// A command to measure and its environment (nothing else from this process's environment
/// is passed on, so a stray AWS profile cannot change what is measured).
#[derive(Debug, Clone)]
pub struct Command {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment (`AWS_LAMBDA_RUNTIME_API` is added).
    pub env: Vec<(String, String)>,
    /// Where its stdout and stderr go (overwritten at each start).
    pub log: PathBuf,
}

/// What one start measured.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Start {
    /// Exec → first `next`, in milliseconds.
    pub init_ms: f64,
    /// Exec → first answer, in milliseconds.
    pub first_answer_ms: f64,
    /// How the first invocation was answered.
    pub first_answer: AnswerKind,
    /// Invocations answered in all (the first included).
    pub invocations: usize,
    /// Of those, answered with `…/response`.
    pub responses: usize,
    /// `next` handed out → answer, in milliseconds, for each invocation after the first.
    pub warm_ms: Vec<f64>,
    /// Peak resident set (`VmHWM`, kB) read just before the process was killed.
    pub vm_hwm_kb: Option<u64>,
}

/// Why a start could not be measured: the harness or the function is broken.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The command could not be started.
    #[error("cannot start {0}: {1}")]
    Spawn(String, std::io::Error),
    /// It exited before answering.
    #[error("{program} exited ({status}) before answering; see {log}")]
    Exited {
        /// The program.
        program: String,
        /// Its exit status.
        status: String,
        /// Its log.
        log: String,
    },
    /// It did not answer in time.
    #[error("{program} did not answer invocation {n} within {secs} s; see {log}")]
    Timeout {
        /// The program.
        program: String,
        /// Which invocation (1 = the first).
        n: usize,
        /// The timeout.
        secs: u64,
        /// Its log.
        log: String,
    },
    /// It failed to initialise.
    #[error("{program} reported an init error: {body}; see {log}")]
    Init {
        /// The program.
        program: String,
        /// What it posted.
        body: String,
        /// Its log.
        log: String,
    },
    /// An answer came for another invocation than the one in flight.
    #[error("{program} answered {got} while {expected} was in flight")]
    Mismatch {
        /// The program.
        program: String,
        /// The request id in flight.
        expected: String,
        /// The request id answered.
        got: String,
    },
    /// The emulator could not listen.
    #[error("emulator: {0}")]
    Io(#[from] std::io::Error),
}

/// `VmHWM` of a live process, in kB (Linux).
pub fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Starts `cmd` under a fresh emulator, answers `first` (timed from exec), then `more` further
/// invocations cycling through `events`, reads its peak RSS and kills it.
pub async fn measure_start(
    cmd: &Command,
    first: &Bytes,
    events: &[Bytes],
    more: usize,
    timeout: Duration,
) -> Result<Start, StartError> {
    let mut emu = Emulator::start().await?;
    let program = cmd.program.display().to_string();
    let log_name = cmd.log.display().to_string();
    let log = std::fs::File::create(&cmd.log)?;
    let first_id = emu.queue(first.clone());
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(&cmd.program)
        .args(&cmd.args)
        .env_clear()
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .env("AWS_LAMBDA_RUNTIME_API", emu.addr.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| StartError::Spawn(program.clone(), e))?;
    let pid = child.id().unwrap_or(0);
    let first_answer = tokio::select! {
        a = emu.answer(timeout) => a,
        status = child.wait() => {
            return Err(StartError::Exited {
                program,
                status: status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                log: log_name,
            });
        }
    };
    let Some(first_answer) = first_answer else {
        return Err(StartError::Timeout {
            program,
            n: 1,
            secs: timeout.as_secs(),
            log: log_name,
        });
    };
    if first_answer.kind == AnswerKind::InitError {
        return Err(StartError::Init {
            program,
            body: String::from_utf8_lossy(&first_answer.body).into_owned(),
            log: log_name,
        });
    }
    if first_answer.id != first_id {
        return Err(StartError::Mismatch {
            program,
            expected: first_id,
            got: first_answer.id,
        });
    }
    let init = emu.first_next().unwrap_or(first_answer.at) - t0;
    let mut start = Start {
        init_ms: ms(init),
        first_answer_ms: ms(first_answer.at - t0),
        first_answer: first_answer.kind,
        invocations: 1,
        responses: usize::from(first_answer.kind == AnswerKind::Response),
        warm_ms: Vec::with_capacity(more),
        vm_hwm_kb: None,
    };
    for n in 0..more {
        let id = emu.queue(events[n % events.len()].clone());
        let Some(a) = emu.answer(timeout).await else {
            return Err(StartError::Timeout {
                program,
                n: n + 2,
                secs: timeout.as_secs(),
                log: log_name,
            });
        };
        if a.id != id {
            return Err(StartError::Mismatch {
                program,
                expected: id,
                got: a.id,
            });
        }
        start.invocations += 1;
        start.responses += usize::from(a.kind == AnswerKind::Response);
        start.warm_ms.push(ms(a.duration));
    }
    start.vm_hwm_kb = vm_hwm_kb(pid);
    let _ = child.kill().await;
    Ok(start)
}

/// Milliseconds, as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_hwm() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    4321 kB\nVmRSS:\t 4000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(4321));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
        let own = vm_hwm_kb(std::process::id()).expect("this process has a VmHWM");
        assert!(own > 0);
    }

    /// The emulator driven by an HTTP client exactly as a runtime drives it.
    #[tokio::test]
    async fn emulator_hands_out_events_and_collects_answers() {
        let mut emu = Emulator::start().await.unwrap();
        let base = format!("http://{}/2018-06-01/runtime", emu.addr);
        let http = reqwest::Client::new();
        let id = emu.queue(Bytes::from_static(b"{\"n\":1}"));
        assert!(emu.first_next().is_none());
        let next = http
            .get(format!("{base}/invocation/next"))
            .send()
            .await
            .unwrap();
        assert_eq!(next.status(), 200);
        assert_eq!(
            next.headers()["lambda-runtime-aws-request-id"]
                .to_str()
                .unwrap(),
            id
        );
        assert!(next.headers().contains_key("lambda-runtime-deadline-ms"));
        assert_eq!(next.bytes().await.unwrap().as_ref(), b"{\"n\":1}");
        assert!(emu.first_next().is_some());
        let posted = http
            .post(format!("{base}/invocation/{id}/response"))
            .body("ok")
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 202);
        let a = emu.answer(Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            (a.kind, a.id.as_str(), a.body.as_ref()),
            (AnswerKind::Response, id.as_str(), b"ok".as_ref())
        );

        let id2 = emu.queue(Bytes::from_static(b"{}"));
        let next = http
            .get(format!("{base}/invocation/next"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            next.headers()["lambda-runtime-aws-request-id"]
                .to_str()
                .unwrap(),
            id2
        );
        http.post(format!("{base}/invocation/{id2}/error"))
            .body("{\"errorType\":\"x\"}")
            .send()
            .await
            .unwrap();
        let a = emu.answer(Duration::from_secs(5)).await.unwrap();
        assert_eq!(a.kind, AnswerKind::Error);
    }

    /// A fake function (a shell script with bash's /dev/tcp) started and measured end to end.
    #[tokio::test]
    async fn measures_a_fake_function() {
        let dir = std::env::temp_dir().join(format!("herald-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Speaks HTTP/1.0-style requests over /dev/tcp: GET next, read the request id, POST
        // the response, forever.
        let script = r#"
set -u
host=${AWS_LAMBDA_RUNTIME_API%:*}; port=${AWS_LAMBDA_RUNTIME_API#*:}
while true; do
  exec 3<>/dev/tcp/$host/$port
  printf 'GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
  id=$(grep -i -m1 '^lambda-runtime-aws-request-id:' <&3 | cut -d' ' -f2 | tr -d '\r')
  exec 3>&-
  [ -n "$id" ] || exit 1
  exec 3<>/dev/tcp/$host/$port
  printf 'POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok' "$id" >&3
  cat <&3 >/dev/null
  exec 3>&-
done
"#;
        let path = dir.join("fake.sh");
        std::fs::write(&path, script).unwrap();
        let cmd = Command {
            program: PathBuf::from("/bin/bash"),
            args: vec![path.display().to_string()],
            env: vec![],
            log: dir.join("fake.log"),
        };
        let event = Bytes::from_static(b"{}");
        let s = measure_start(
            &cmd,
            &event,
            std::slice::from_ref(&event),
            3,
            Duration::from_secs(20),
        )
        .await
        .unwrap();
        assert_eq!((s.invocations, s.responses), (4, 4));
        assert_eq!(s.first_answer, AnswerKind::Response);
        assert!(s.init_ms > 0.0 && s.init_ms <= s.first_answer_ms);
        assert_eq!(s.warm_ms.len(), 3);
        assert!(s.vm_hwm_kb.unwrap_or(0) > 0);

        // A command that exits at once is reported, not waited for.
        let cmd = Command {
            program: PathBuf::from("/bin/false"),
            args: vec![],
            env: vec![],
            log: dir.join("false.log"),
        };
        let err = measure_start(&cmd, &event, &[], 0, Duration::from_secs(20))
            .await
            .unwrap_err();
        assert!(matches!(err, StartError::Exited { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
