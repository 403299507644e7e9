//! The Twilio simulator.
