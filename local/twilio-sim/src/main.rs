//! The twilio-sim binary.
fn main() {}
