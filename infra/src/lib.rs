//! Herald's deployment, checked: `infra/template.yaml` (SAM) against what the code requires and
//! calls, and the event fixtures in `events/` run through their handlers. Everything is in
//! `tests/deploy.rs`; this library is empty.
