//! Panics that can neither go unseen nor leak.
//!
//! Rust's default panic hook prints the panic's message to standard error, which Lambda sends to
//! CloudWatch Logs, and `lambda_runtime` reports an uncaught panic to the Runtime API as
//! `Lambda panicked: <message>`. A message can quote whatever the code held (a number, a body,
//! a code), so neither may see it:
//! - [`install_hook`] replaces the default hook with one that logs where the panic happened,
//!   never what it said, and counts it as the `Panics` metric the template's `PanicAlarm`
//!   watches;
//! - [`catch`] turns a panicking handler future into [`Panicked`], which the API functions answer
//!   `500 internal-error` problem+json and the others report as a failed invocation, so the
//!   trigger's own retry (SQS, Secrets Manager, the next sweep) takes the work up again.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

/// The metric every panic adds one to (with the function as a dimension, and as a total).
pub const METRIC: &str = "Panics";

static HOOK: std::sync::Once = std::sync::Once::new();

/// Installs the panic hook for the process, naming `function` on its log line and metric. Only
/// the first call counts.
pub fn install_hook(function: &'static str) {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(move |info| {
            let (file, line) = info
                .location()
                .map_or(("unknown", 0), |l| (l.file(), l.line()));
            tracing::error!(
                function,
                panic.file = file,
                panic.line = line,
                "panicked (the message is withheld: it may quote personal data)"
            );
            crate::telemetry::metric(METRIC, 1.0, "Count", &[("Function", function)]);
        }));
    });
}

/// A handler panicked; its message is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the handler panicked (its location is logged; its message is withheld)")]
pub struct Panicked;

/// Runs `future`, turning a panic while it is polled into [`Panicked`].
pub async fn catch<F: Future>(future: F) -> Result<F::Output, Panicked> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|_| Panicked)
}

/// The answer to an API request whose handler panicked: `500 internal-error` problem+json, with
/// nothing of the request or the panic in it.
pub fn response() -> http::Response<String> {
    crate::problem::Problem::new(crate::problem::ProblemKind::InternalError).into_response()
}
