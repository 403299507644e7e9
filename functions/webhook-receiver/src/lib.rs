//! The webhook-receiver handler.
