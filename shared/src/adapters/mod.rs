//! Adapters: the ports implemented on AWS (feature `aws`) and embedded (feature `embedded`).

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "embedded")]
pub mod embedded;

/// What the stores keep beside a record's document, the same for every record kind: who sent
/// it and the lookup token of its recipient.
#[cfg(any(feature = "aws", feature = "embedded"))]
pub(crate) trait Stored:
    crate::domain::Attempted + serde::Serialize + serde::de::DeserializeOwned
{
    /// The caller that sent it (a column of its own in SQLite).
    #[cfg(feature = "embedded")]
    fn caller(&self) -> &str;
    /// The lookup token of its recipient.
    fn to_token(&self) -> &crate::crypto::LookupToken;
}

/// Messages and calls both keep them in fields of those names.
macro_rules! stored {
    ($($kind:ty),*) => {$(
        #[cfg(any(feature = "aws", feature = "embedded"))]
        impl Stored for $kind {
            #[cfg(feature = "embedded")]
            fn caller(&self) -> &str {
                &self.caller
            }
            fn to_token(&self) -> &crate::crypto::LookupToken {
                &self.to.token
            }
        }
    )*};
}
stored!(crate::domain::Message, crate::domain::Call);
