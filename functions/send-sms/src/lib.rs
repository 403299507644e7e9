//! The send-sms handler.
