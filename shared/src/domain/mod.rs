//! Herald's domain: messages, calls, their statuses and the rules that move them.

pub mod call;
pub mod event;
pub mod ids;
pub mod message;
pub mod verification;

pub use call::{Call, CallReport, CallRetry, CallStatus, Speech};
pub use event::{Event, EventKind, Subject};
pub use ids::{CallId, InvalidId, MessageId, VerificationId};
pub use message::{ClaimRefusal, Message, MessageStatus, RetryChange, StatusChange, Transition};
pub use verification::{Verification, VerificationStatus};
