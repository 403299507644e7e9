//! The send-sms Lambda.
fn main() {}
