//! A versioned secret in SQLite with Secrets Manager's staging labels (`AWSCURRENT`,
//! `AWSPENDING`, `AWSPREVIOUS`): the local stand-in for the Twilio secret and its rotation.
//!
//! It may share the database file with the [`super::SqliteStore`]; its tables
//! (`secret_meta`, `secret_versions`, `secret_stages`) are its own, on a connection of its own.
//! Every change is one immediate transaction.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::Secret;
use crate::ports::{
    AWSCURRENT, AWSPENDING, AWSPREVIOUS, Clock, SecretError, SecretMetadata, SecretSource,
    SecretValue, SecretVersions, TwilioCredentials,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS secret_meta (
    name TEXT PRIMARY KEY,
    rotation_enabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS secret_versions (
    name TEXT NOT NULL,
    version_id TEXT NOT NULL,
    text TEXT,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (name, version_id)
);
CREATE TABLE IF NOT EXISTS secret_stages (
    name TEXT NOT NULL,
    stage TEXT NOT NULL,
    version_id TEXT NOT NULL,
    PRIMARY KEY (name, stage)
);
";

/// One named secret in SQLite. Clone it freely: clones share one connection.
#[derive(Clone)]
pub struct SqliteSecretStore {
    conn: Arc<Mutex<Connection>>,
    name: Arc<str>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SqliteSecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSecretStore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn backend(e: rusqlite::Error) -> SecretError {
    SecretError::Transient(Box::new(e))
}

fn invalid(msg: impl Into<String>) -> SecretError {
    SecretError::Invalid(msg.into())
}

type Tx<'a> = rusqlite::Transaction<'a>;

fn exists(tx: &Connection, name: &str) -> Result<bool, SecretError> {
    tx.query_row(
        "SELECT 1 FROM secret_meta WHERE name = ?1",
        params![name],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
    .map_err(backend)
}

fn stages_of(c: &Connection, name: &str, version: &str) -> Result<Vec<String>, SecretError> {
    let mut st = c
        .prepare(
            "SELECT stage FROM secret_stages WHERE name = ?1 AND version_id = ?2 ORDER BY stage",
        )
        .map_err(backend)?;
    st.query_map(params![name, version], |r| r.get(0))
        .map_err(backend)?
        .collect::<Result<Vec<String>, _>>()
        .map_err(backend)
}

fn holder(c: &Connection, name: &str, stage: &str) -> Result<Option<String>, SecretError> {
    c.query_row(
        "SELECT version_id FROM secret_stages WHERE name = ?1 AND stage = ?2",
        params![name, stage],
        |r| r.get(0),
    )
    .optional()
    .map_err(backend)
}

/// `None`: no such version; `Some(None)`: a version without a value.
fn text_of(
    c: &Connection,
    name: &str,
    version: &str,
) -> Result<Option<Option<String>>, SecretError> {
    c.query_row(
        "SELECT text FROM secret_versions WHERE name = ?1 AND version_id = ?2",
        params![name, version],
        |r| r.get::<_, Option<String>>(0),
    )
    .optional()
    .map_err(backend)
}

/// Puts `stage` on `version` (which exists), taking it from its holder; AWSCURRENT leaves
/// AWSPREVIOUS behind.
fn attach(tx: &Tx<'_>, name: &str, stage: &str, version: &str) -> Result<(), SecretError> {
    let old = holder(tx, name, stage)?;
    if old.as_deref() == Some(version) {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO secret_stages (name, stage, version_id) VALUES (?1, ?2, ?3)
         ON CONFLICT (name, stage) DO UPDATE SET version_id = excluded.version_id",
        params![name, stage, version],
    )
    .map_err(backend)?;
    if stage == AWSCURRENT {
        match old {
            Some(old) => {
                tx.execute(
                    "INSERT INTO secret_stages (name, stage, version_id) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name, stage) DO UPDATE SET version_id = excluded.version_id",
                    params![name, AWSPREVIOUS, old],
                )
                .map_err(backend)?;
            }
            None => {
                tx.execute(
                    "DELETE FROM secret_stages WHERE name = ?1 AND stage = ?2 AND version_id = ?3",
                    params![name, AWSPREVIOUS, version],
                )
                .map_err(backend)?;
            }
        }
        // A version is never both current and previous.
        tx.execute(
            "DELETE FROM secret_stages WHERE name = ?1 AND stage = ?2 AND version_id = ?3",
            params![name, AWSPREVIOUS, version],
        )
        .map_err(backend)?;
    }
    Ok(())
}

impl SqliteSecretStore {
    /// Opens (and creates) the database at `path` on a connection of its own, for the secret
    /// `name`. The file may be the store's.
    pub fn open(path: &Path, name: &str, clock: Arc<dyn Clock>) -> Result<Self, SecretError> {
        super::private::prepare_db(path).map_err(|e| SecretError::Transient(Box::new(e)))?;
        Self::init(Connection::open(path).map_err(backend)?, name, clock)
    }

    /// The secret `name` in a private in-memory database (tests).
    pub fn in_memory(name: &str, clock: Arc<dyn Clock>) -> Result<Self, SecretError> {
        Self::init(Connection::open_in_memory().map_err(backend)?, name, clock)
    }

    fn init(conn: Connection, name: &str, clock: Arc<dyn Clock>) -> Result<Self, SecretError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            name: name.into(),
            clock,
        })
    }

    async fn with<T, F>(&self, f: F) -> Result<T, SecretError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str, i64) -> Result<T, SecretError> + Send + 'static,
    {
        let (conn, name, now) = (self.conn.clone(), self.name.clone(), self.clock.now_ms());
        tokio::task::spawn_blocking(move || {
            let mut c = conn
                .lock()
                .map_err(|_| invalid("secret store lock poisoned"))?;
            f(&mut c, &name, now)
        })
        .await
        .map_err(|e| SecretError::Transient(Box::new(e)))?
    }

    async fn tx<T, F>(&self, f: F) -> Result<T, SecretError>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>, &str, i64) -> Result<T, SecretError> + Send + 'static,
    {
        self.with(move |c, name, now| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let out = f(&tx, name, now)?;
            tx.commit().map_err(backend)?;
            Ok(out)
        })
        .await
    }

    /// Creates the secret with `text` as its first version (`AWSCURRENT`, id `version_id`),
    /// unless it exists. Returns whether it was created.
    pub async fn create_if_absent(
        &self,
        version_id: &str,
        text: &str,
    ) -> Result<bool, SecretError> {
        let (version, text) = (version_id.to_owned(), text.to_owned());
        self.tx(move |tx, name, now| {
            if exists(tx, name)? {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO secret_meta (name, rotation_enabled) VALUES (?1, 0)",
                params![name],
            )
            .map_err(backend)?;
            tx.execute(
                "INSERT INTO secret_versions (name, version_id, text, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![name, version, text, now],
            )
            .map_err(backend)?;
            attach(tx, name, AWSCURRENT, &version)?;
            Ok(true)
        })
        .await
    }

    /// Turns rotation on or off (Secrets Manager: `RotateSecret` with rules, `CancelRotateSecret`).
    pub async fn set_rotation_enabled(&self, enabled: bool) -> Result<(), SecretError> {
        self.tx(move |tx, name, _| {
            let n = tx
                .execute(
                    "UPDATE secret_meta SET rotation_enabled = ?2 WHERE name = ?1",
                    params![name, enabled],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(invalid("no such secret"));
            }
            Ok(())
        })
        .await
    }

    /// Starts a rotation as Secrets Manager's `RotateSecret` does: adds version `token` without
    /// a value, labelled `AWSPENDING`. Refused when rotation is disabled, or while another
    /// version is pending (a rotation in progress: finish it with its own token). Starting again
    /// with the pending token changes nothing.
    pub async fn start_rotation(&self, token: &str) -> Result<(), SecretError> {
        let token = token.to_owned();
        self.tx(move |tx, name, now| {
            let enabled: Option<bool> = tx
                .query_row(
                    "SELECT rotation_enabled FROM secret_meta WHERE name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            match enabled {
                None => return Err(invalid("no such secret")),
                Some(false) => return Err(invalid("rotation is not enabled for the secret")),
                Some(true) => {}
            }
            if let Some(pending) = holder(tx, name, AWSPENDING)? {
                let current = holder(tx, name, AWSCURRENT)?;
                if pending == token {
                    return Ok(());
                }
                if current.as_deref() != Some(pending.as_str()) {
                    return Err(invalid(format!(
                        "a previous rotation is still in progress (version {pending} is AWSPENDING)"
                    )));
                }
            }
            if text_of(tx, name, &token)?.is_some() {
                return Err(invalid("the token is an existing version"));
            }
            tx.execute(
                "INSERT INTO secret_versions (name, version_id, text, created_at_ms) VALUES (?1, ?2, NULL, ?3)",
                params![name, token, now],
            )
            .map_err(backend)?;
            attach(tx, name, AWSPENDING, &token)
        })
        .await
    }
}

#[async_trait]
impl SecretVersions for SqliteSecretStore {
    async fn describe(&self) -> Result<SecretMetadata, SecretError> {
        self.with(|c, name, _| {
            let enabled: Option<bool> = c
                .query_row(
                    "SELECT rotation_enabled FROM secret_meta WHERE name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            let Some(rotation_enabled) = enabled else {
                return Err(invalid("no such secret"));
            };
            let mut meta = SecretMetadata {
                rotation_enabled,
                ..SecretMetadata::default()
            };
            let mut st = c
                .prepare("SELECT version_id FROM secret_versions WHERE name = ?1")
                .map_err(backend)?;
            let versions = st
                .query_map(params![name], |r| r.get::<_, String>(0))
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            for v in versions {
                let stages = stages_of(c, name, &v)?;
                meta.versions.insert(v, stages);
            }
            Ok(meta)
        })
        .await
    }

    async fn get_by_stage(&self, stage: &str) -> Result<Option<SecretValue>, SecretError> {
        let stage = stage.to_owned();
        self.with(move |c, name, _| {
            if !exists(c, name)? {
                return Err(invalid("no such secret"));
            }
            let Some(version) = holder(c, name, &stage)? else {
                return Ok(None);
            };
            let Some(Some(text)) = text_of(c, name, &version)? else {
                return Ok(None);
            };
            Ok(Some(SecretValue {
                stages: stages_of(c, name, &version)?,
                version_id: version,
                text: Secret::new(text),
            }))
        })
        .await
    }

    async fn get_version(&self, version_id: &str) -> Result<Option<SecretValue>, SecretError> {
        let version = version_id.to_owned();
        self.with(move |c, name, _| {
            if !exists(c, name)? {
                return Err(invalid("no such secret"));
            }
            let Some(Some(text)) = text_of(c, name, &version)? else {
                return Ok(None);
            };
            Ok(Some(SecretValue {
                stages: stages_of(c, name, &version)?,
                version_id: version,
                text: Secret::new(text),
            }))
        })
        .await
    }

    async fn put_version(
        &self,
        version_id: &str,
        text: &str,
        stages: &[&str],
    ) -> Result<(), SecretError> {
        let (version, text) = (version_id.to_owned(), text.to_owned());
        let stages: Vec<String> = stages.iter().map(|s| (*s).to_owned()).collect();
        self.tx(move |tx, name, now| {
            if !exists(tx, name)? {
                return Err(invalid("no such secret"));
            }
            match text_of(tx, name, &version)? {
                Some(Some(existing)) if existing == text => {}
                Some(Some(_)) => {
                    return Err(invalid(
                        "the version exists with another value (versions are immutable)",
                    ));
                }
                Some(None) => {
                    tx.execute(
                        "UPDATE secret_versions SET text = ?3 WHERE name = ?1 AND version_id = ?2",
                        params![name, version, text],
                    )
                    .map_err(backend)?;
                }
                None => {
                    tx.execute(
                        "INSERT INTO secret_versions (name, version_id, text, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
                        params![name, version, text, now],
                    )
                    .map_err(backend)?;
                }
            }
            for stage in &stages {
                attach(tx, name, stage, &version)?;
            }
            Ok(())
        })
        .await
    }

    async fn move_stage(&self, stage: &str, version_id: &str) -> Result<(), SecretError> {
        let (stage, version) = (stage.to_owned(), version_id.to_owned());
        self.tx(move |tx, name, _| {
            if !exists(tx, name)? {
                return Err(invalid("no such secret"));
            }
            if text_of(tx, name, &version)?.is_none() {
                return Err(invalid("no such version"));
            }
            attach(tx, name, &stage, &version)
        })
        .await
    }

    async fn remove_stage(&self, stage: &str, version_id: &str) -> Result<(), SecretError> {
        if stage == AWSCURRENT {
            return Err(invalid("AWSCURRENT is moved, never removed"));
        }
        let (stage, version) = (stage.to_owned(), version_id.to_owned());
        self.tx(move |tx, name, _| {
            if !exists(tx, name)? {
                return Err(invalid("no such secret"));
            }
            tx.execute(
                "DELETE FROM secret_stages WHERE name = ?1 AND stage = ?2 AND version_id = ?3",
                params![name, stage, version],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl SecretSource for SqliteSecretStore {
    async fn current(&self) -> Result<TwilioCredentials, SecretError> {
        let value = self
            .get_by_stage(AWSCURRENT)
            .await?
            .ok_or_else(|| invalid("the secret has no current value"))?;
        crate::twilio::credentials::parse_credentials(value.text.expose())
    }
}
