//! The local data folder is 0700 and the database, its `-wal` and `-shm` are 0600.
#![cfg(all(unix, feature = "embedded"))]

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use herald::adapters::embedded::SqliteStore;
use herald::ports::{Clock, SystemClock};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn data_dir_and_database_files_are_private() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let db = dir.join("herald.db");
    let _store = SqliteStore::open(&db, Arc::new(SystemClock) as Arc<dyn Clock>).expect("open");
    assert_eq!(mode(&dir), 0o700, "data dir");
    for f in ["herald.db", "herald.db-wal", "herald.db-shm"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
}

#[test]
fn looser_modes_are_tightened_on_open() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let db = dir.join("herald.db");
    std::fs::write(&db, b"").expect("db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let _store = SqliteStore::open(&db, Arc::new(SystemClock) as Arc<dyn Clock>).expect("open");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&db), 0o600);
}
