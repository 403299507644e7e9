//! Private files on one machine: the data folder 0700 and the SQLite database 0600, so that the
//! `-wal` and `-shm` files SQLite creates beside it (with the database file's mode, on unix)
//! are 0600 too. Existing looser modes are tightened.

use std::path::Path;

/// Options that create a file readable and writable by its owner only (0600 on unix); the
/// caller adds how it opens (`create_new`, `truncate` …).
pub fn private_options() -> std::fs::OpenOptions {
    let mut opts = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts
}

/// Creates the folder of `db` (0700; tightened if it exists) and the database file itself
/// (0600; tightened if it exists), and tightens an existing `-wal` and `-shm` to 0600.
pub(super) fn prepare_db(db: &Path) -> std::io::Result<()> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        private_dir(dir)?;
    }
    drop(
        private_options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(db)?,
    );
    tighten(db, 0o600)?;
    for suffix in ["-wal", "-shm"] {
        let mut side = db.as_os_str().to_owned();
        side.push(suffix);
        let side = std::path::PathBuf::from(side);
        if side.exists() {
            tighten(&side, 0o600)?;
        }
    }
    Ok(())
}

/// Creates `dir` with mode 0700, or tightens it to 0700.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)?;
    tighten(dir, 0o700)
}

/// Sets `path`'s mode to `mode` unless it already is (nothing to do off unix).
fn tighten(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(path)?.permissions().mode() & 0o777 != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}
