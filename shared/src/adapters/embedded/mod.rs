//! Embedded adapters for one machine: a SQLite store and queue (one database file), a local
//! master key, and the Twilio secret in a file.

mod keys;
mod memory_secret;
mod private;
mod queue;
mod secret_store;
mod secrets;
mod store;

pub use keys::LocalKeyService;
pub use memory_secret::MemorySecretSource;
pub use private::private_options;
pub use queue::SqliteQueue;
pub use secret_store::SqliteSecretStore;
pub use secrets::FileSecretSource;
pub use store::SqliteStore;
