//! The conformance suite against the embedded adapters: the SQLite store (a file in a temporary
//! folder, two connections to one file, and in memory) with the local key service.
#![cfg(all(feature = "test-util", feature = "embedded"))]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use herald::adapters::embedded::{LocalKeyService, SqliteStore};
use herald::ports::Clock;
use herald::testing::{self, Alternate, Ports};

struct Fixture {
    ports: Ports,
    path: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

fn ports_over<S>(store: Arc<S>, clock: Arc<herald::ports::ManualClock>) -> Ports
where
    S: herald::ports::MessageStore
        + herald::ports::EventStore
        + herald::ports::Keyring
        + herald::ports::OptOutStore
        + 'static,
{
    Ports {
        messages: store.clone(),
        events: store.clone(),
        opt_outs: store.clone(),
        keyring: store,
        keys: Arc::new(LocalKeyService::from_key(&[7; 32])),
        foreign_keys: Arc::new(LocalKeyService::from_key(&[9; 32])),
        clock,
    }
}

fn file() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db").join("herald.sqlite");
    let clock = testing::test_clock();
    let store = SqliteStore::open(&path, clock.clone() as Arc<dyn Clock>).expect("open");
    Fixture {
        ports: ports_over(Arc::new(store), clock),
        path: Some(path),
        _dir: Some(dir),
    }
}

/// Two connections to one file, used in turn: races cross connections, as across processes.
fn two_connections() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("herald.sqlite");
    let clock = testing::test_clock();
    let a = SqliteStore::open(&path, clock.clone() as Arc<dyn Clock>).expect("open");
    let b = SqliteStore::open(&path, clock.clone() as Arc<dyn Clock>).expect("open");
    let store = Alternate::new(vec![Arc::new(a), Arc::new(b)]);
    Fixture {
        ports: ports_over(Arc::new(store), clock),
        path: Some(path),
        _dir: Some(dir),
    }
}

fn memory() -> Fixture {
    let clock = testing::test_clock();
    let store = SqliteStore::in_memory(clock.clone() as Arc<dyn Clock>).expect("open");
    Fixture {
        ports: ports_over(Arc::new(store), clock),
        path: None,
        _dir: None,
    }
}

macro_rules! contracts {
    ($name:ident, $fixture:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn key_service() {
                let f = $fixture;
                testing::key_service_contract(f.ports.keys.clone(), f.ports.foreign_keys.clone())
                    .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn keyring() {
                let f = $fixture;
                testing::keyring_contract(f.ports.keyring.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn keyring_races() {
                let f = $fixture;
                testing::keyring_races(f.ports.keyring.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn vault() {
                let f = $fixture;
                testing::vault_contract(&f.ports).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn message_store() {
                let f = $fixture;
                testing::message_store_contract(f.ports.messages.clone(), &f.ports.vault()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn message_store_races() {
                let f = $fixture;
                testing::message_store_races(f.ports.messages.clone(), &f.ports.vault()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn attempts() {
                let f = $fixture;
                testing::attempt_contract(f.ports.messages.clone(), &f.ports.vault()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn attempt_races() {
                let f = $fixture;
                testing::attempt_races(f.ports.messages.clone(), &f.ports.vault()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn messages_in_doubt() {
                let f = $fixture;
                testing::message_in_doubt_contract(f.ports.messages.clone(), &f.ports.vault())
                    .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn messages_by_status_paged() {
                let f = $fixture;
                herald::testing_paging::message_paging_contract(
                    f.ports.messages.clone(),
                    &f.ports.vault(),
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn event_store() {
                let f = $fixture;
                testing::event_store_contract(f.ports.events.clone(), f.ports.clock.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn event_store_races() {
                let f = $fixture;
                testing::event_store_races(f.ports.events.clone(), f.ports.clock.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn opt_outs() {
                let f = $fixture;
                testing::opt_out_contract(f.ports.opt_outs.clone(), &f.ports.vault()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn opt_out_races() {
                let f = $fixture;
                testing::opt_out_races(f.ports.opt_outs.clone(), &f.ports.vault()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn run_all() {
                let f = $fixture;
                testing::run_all(&f.ports).await;
            }
        }
    };
}

contracts!(file, file());
contracts!(two_connections, two_connections());
contracts!(memory, memory());

/// Every stored value of the database at `path`, each column of each row of each table, plus
/// the raw bytes of the database and WAL files themselves.
fn raw_dump(path: &Path) -> Vec<Vec<u8>> {
    use rusqlite::types::ValueRef;
    let conn = rusqlite::Connection::open(path).expect("open raw");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .expect("tables")
        .query_map([], |r| r.get(0))
        .expect("tables")
        .collect::<Result<_, _>>()
        .expect("tables");
    assert!(tables.iter().any(|t| t == "messages"), "{tables:?}");
    let mut out = Vec::new();
    for table in tables {
        let mut st = conn
            .prepare(&format!("SELECT * FROM \"{table}\""))
            .expect("select");
        let columns = st.column_count();
        let mut rows = st.query([]).expect("rows");
        while let Some(row) = rows.next().expect("row") {
            for i in 0..columns {
                out.push(match row.get_ref(i).expect("value") {
                    ValueRef::Null => Vec::new(),
                    ValueRef::Integer(v) => v.to_string().into_bytes(),
                    ValueRef::Real(v) => v.to_string().into_bytes(),
                    ValueRef::Text(t) | ValueRef::Blob(t) => t.to_vec(),
                });
            }
        }
    }
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    for file in [path.to_path_buf(), PathBuf::from(wal)] {
        if let Ok(bytes) = std::fs::read(&file) {
            out.push(bytes);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn personal_data_is_not_stored_in_plaintext() {
    let f = file();
    let vault = f.ports.vault();
    let data =
        testing::store_personal_data(f.ports.messages.as_ref(), f.ports.events.as_ref(), &vault)
            .await;
    let dump = raw_dump(f.path.as_deref().expect("a file"));
    data.assert_absent_from(&dump);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_raw_dump_would_see_plaintext() {
    // The check above is only worth something if it finds plaintext when it is there.
    let f = file();
    let vault = f.ports.vault();
    let data =
        testing::store_personal_data(f.ports.messages.as_ref(), f.ports.events.as_ref(), &vault)
            .await;
    let mut leaky = testing::sample_message(&vault, 1_731_600_000_000, "+15550000000", "x").await;
    leaky.caller = data.body.clone();
    f.ports
        .messages
        .insert_record(&leaky)
        .await
        .expect("insert");
    let dump = raw_dump(f.path.as_deref().expect("a file"));
    let caught = std::panic::catch_unwind(|| data.assert_absent_from(&dump));
    assert!(
        caught.is_err(),
        "a plaintext body in a column went unnoticed"
    );
}

/// A database made before the sweeper paged by `(created_at_ms, id)` opens with the status
/// indexes replaced by ones that serve the keyset, and its records are listed as before.
#[tokio::test]
async fn a_database_from_before_paged_sweeps_is_migrated() {
    let f = file();
    let path = f.path.clone().expect("a file");
    let vault = f.ports.vault();
    let m = testing::sample_message(&vault, 1_731_600_000_000, "+14155550199", "old").await;
    f.ports.messages.insert_record(&m).await.expect("insert");
    drop(f.ports);
    let indexes = |c: &rusqlite::Connection| -> Vec<String> {
        c.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE '%by_status%' ORDER BY name")
            .expect("indexes")
            .query_map([], |r| r.get(0))
            .expect("indexes")
            .collect::<Result<_, _>>()
            .expect("indexes")
    };
    {
        let c = rusqlite::Connection::open(&path).expect("open raw");
        c.execute_batch(
            "DROP INDEX messages_by_status_id; DROP INDEX calls_by_status_id;
             CREATE INDEX messages_by_status ON messages (status, created_at_ms);
             CREATE INDEX calls_by_status ON calls (status, created_at_ms);",
        )
        .expect("the old indexes");
    }
    let store = SqliteStore::open(&path, testing::test_clock() as Arc<dyn Clock>).expect("open");
    let c = rusqlite::Connection::open(&path).expect("open raw");
    assert_eq!(indexes(&c), ["calls_by_status_id", "messages_by_status_id"]);
    use herald::ports::{Order, Records};
    let listed = Records::<herald::domain::Message>::records_by_status(
        &store,
        m.status,
        i64::MAX,
        10,
        Order::NewestFirst,
        None,
    )
    .await
    .expect("list")
    .records;
    assert_eq!(listed, [m]);
}

/// The call store's contract on a file, on two connections to one file, and in memory.
mod calls {
    use super::*;
    use herald::crypto::Vault;
    use herald::ports::CallStore;
    use herald::testing_calls;

    fn vault_over(store: Arc<SqliteStore>, clock: Arc<herald::ports::ManualClock>) -> Vault {
        Vault::new(
            Arc::new(LocalKeyService::from_key(&[7; 32])),
            store,
            clock as Arc<dyn Clock>,
        )
    }

    fn stores() -> Vec<(&'static str, Arc<dyn CallStore>, Vault, tempfile::TempDir)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = testing::test_clock();
        let path = dir.path().join("herald.sqlite");
        let a = Arc::new(SqliteStore::open(&path, clock.clone() as Arc<dyn Clock>).expect("open"));
        let b = Arc::new(SqliteStore::open(&path, clock.clone() as Arc<dyn Clock>).expect("open"));
        let mem = Arc::new(SqliteStore::in_memory(clock.clone() as Arc<dyn Clock>).expect("open"));
        let two: Arc<dyn CallStore> = Arc::new(Alternate::new(vec![a.clone(), b]));
        vec![
            (
                "file",
                a.clone() as Arc<dyn CallStore>,
                vault_over(a.clone(), clock.clone()),
                tempfile::tempdir().expect("tempdir"),
            ),
            ("two connections", two, vault_over(a, clock.clone()), dir),
            (
                "memory",
                mem.clone() as Arc<dyn CallStore>,
                vault_over(mem, clock),
                tempfile::tempdir().expect("tempdir"),
            ),
        ]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn call_store() {
        for (what, store, vault, _dir) in stores() {
            eprintln!("{what}");
            testing_calls::call_store_contract(store, &vault).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn call_store_races() {
        for (what, store, vault, _dir) in stores() {
            eprintln!("{what}");
            testing_calls::call_store_races(store, &vault).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn calls_in_doubt() {
        for (what, store, vault, _dir) in stores() {
            eprintln!("{what}");
            testing_calls::call_in_doubt_contract(store, &vault).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn calls_by_status_paged() {
        for (what, store, vault, _dir) in stores() {
            eprintln!("{what}");
            herald::testing_paging::call_paging_contract(store, &vault).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn call_numbers_and_texts_are_not_in_the_raw_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("herald.sqlite");
        let clock = testing::test_clock();
        let store =
            Arc::new(SqliteStore::open(&path, clock.clone() as Arc<dyn Clock>).expect("open"));
        let vault = vault_over(store.clone(), clock);
        let data = testing_calls::store_call_personal_data(store.as_ref(), &vault).await;
        assert_eq!(store.count_calls().await.expect("count"), 1);
        let dump = raw_dump(&path);
        let tables = rusqlite::Connection::open(&path)
            .expect("open raw")
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'calls'")
            .expect("tables")
            .exists([])
            .expect("exists");
        assert!(tables, "the calls table exists");
        data.assert_absent_from(&dump);
    }
}

/// The API-protection ports (rate limits, idempotency keys, verifications, queries by caller)
/// on a file, on two connections to one file, and in memory.
mod protection {
    use super::*;
    use herald::crypto::Vault;
    use herald::testing_protect;

    fn vault_over(store: Arc<SqliteStore>, clock: Arc<herald::ports::ManualClock>) -> Vault {
        Vault::new(
            Arc::new(LocalKeyService::from_key(&[7; 32])),
            store,
            clock as Arc<dyn Clock>,
        )
    }

    async fn each(what: &str, two: bool, memory: bool) {
        eprintln!("{what}");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("herald.sqlite");
        let clock = testing::test_clock();
        let open = || {
            Arc::new(if memory {
                SqliteStore::in_memory(clock.clone() as Arc<dyn Clock>).expect("open")
            } else {
                SqliteStore::open(&path, clock.clone() as Arc<dyn Clock>).expect("open")
            })
        };
        let a = open();
        let vault = vault_over(a.clone(), clock.clone());
        if two {
            let both = Arc::new(Alternate::new(vec![a, open()]));
            testing_protect::run_all(both.clone(), both, &vault).await;
        } else {
            testing_protect::run_all(a.clone(), a, &vault).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn file() {
        each("file", false, false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_connections() {
        each("two connections", true, false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn memory() {
        each("memory", false, true).await;
    }

    /// A database made before idempotency records kept when their use began opens, gains the
    /// column, and goes on: an old in-progress record taken over begins its use then.
    #[tokio::test]
    async fn a_database_from_before_started_at_is_migrated() {
        use herald::ports::{Begun, IdempotencyStore};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("herald.sqlite");
        {
            let c = rusqlite::Connection::open(&path).expect("open raw");
            c.execute_batch(
                "CREATE TABLE idempotency_keys (
                    key TEXT PRIMARY KEY,
                    fingerprint TEXT NOT NULL,
                    lease_until_ms INTEGER,
                    expires_at_ms INTEGER NOT NULL,
                    response TEXT
                );
                INSERT INTO idempotency_keys VALUES ('old', 'fp', 1000, 100000, NULL);",
            )
            .expect("old schema");
        }
        let clock = testing::test_clock();
        let store = SqliteStore::open(&path, clock as Arc<dyn Clock>).expect("open");
        assert_eq!(
            store
                .begin("old", "fp", 2000, 62_000, 100_000)
                .await
                .expect("begin"),
            Begun::Started { since_ms: 2000 }
        );
        assert_eq!(
            store
                .begin("old", "fp", 62_000, 122_000, 100_000)
                .await
                .expect("begin"),
            Begun::Started { since_ms: 2000 }
        );
        assert_eq!(
            store
                .begin("new", "fp", 3000, 63_000, 100_000)
                .await
                .expect("begin"),
            Begun::Started { since_ms: 3000 }
        );
        drop(store);
        // Opening it again changes nothing.
        let store =
            SqliteStore::open(&path, testing::test_clock() as Arc<dyn Clock>).expect("reopen");
        assert_eq!(
            store
                .begin("new", "fp", 3001, 63_000, 100_000)
                .await
                .expect("begin"),
            Begun::InProgress
        );
    }
}

/// Twilio SID ownership on a file, on two connections to one file, and in memory.
mod sids {
    use super::*;
    use herald::ports::SidOwners;
    use herald::testing_sids;

    fn stores() -> Vec<(&'static str, Arc<dyn SidOwners>, tempfile::TempDir)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = testing::test_clock();
        let path = dir.path().join("herald.sqlite");
        let a = Arc::new(SqliteStore::open(&path, clock.clone() as Arc<dyn Clock>).expect("open"));
        let b = Arc::new(SqliteStore::open(&path, clock.clone() as Arc<dyn Clock>).expect("open"));
        let mem = Arc::new(SqliteStore::in_memory(clock as Arc<dyn Clock>).expect("open"));
        vec![
            (
                "file",
                a.clone() as Arc<dyn SidOwners>,
                tempfile::tempdir().expect("tempdir"),
            ),
            ("two connections", Arc::new(Alternate::new(vec![a, b])), dir),
            (
                "memory",
                mem as Arc<dyn SidOwners>,
                tempfile::tempdir().expect("tempdir"),
            ),
        ]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sid_owners() {
        for (what, store, _dir) in stores() {
            eprintln!("{what}");
            testing_sids::sid_owner_contract(store).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sid_owner_races() {
        for (what, store, _dir) in stores() {
            eprintln!("{what}");
            testing_sids::sid_owner_races(store).await;
        }
    }
}
