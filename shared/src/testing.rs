//! The conformance suite every adapter runs (feature `test-util`).
