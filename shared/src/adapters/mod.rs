//! Adapters: the ports implemented on AWS (feature `aws`) and embedded (feature `embedded`).

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "embedded")]
pub mod embedded;
