//! Adapters: the ports implemented on AWS (feature `aws`) and embedded (feature `embedded`).

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "embedded")]
pub mod embedded;

/// A record kind the stores keep: its document, and beside it what [`Attempted`] reads of
/// every kind (the caller, a column of its own in SQLite; the recipient's lookup token).
///
/// [`Attempted`]: crate::domain::Attempted
#[cfg(any(feature = "aws", feature = "embedded"))]
pub(crate) trait Stored:
    crate::domain::Attempted + serde::Serialize + serde::de::DeserializeOwned
{
}

#[cfg(any(feature = "aws", feature = "embedded"))]
impl<T: crate::domain::Attempted + serde::Serialize + serde::de::DeserializeOwned> Stored for T {}
