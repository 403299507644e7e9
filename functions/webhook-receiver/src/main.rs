//! The webhook-receiver Lambda.
fn main() {}
