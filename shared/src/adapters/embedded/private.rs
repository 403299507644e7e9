//! Private files on one machine: the data folder 0700 and the SQLite database 0600, so that the
//! `-wal` and `-shm` files SQLite creates beside it (with the database file's mode, on unix)
//! are 0600 too. Existing looser modes are tightened.

use std::path::Path;

/// Creates the folder of `db` (0700; tightened if it exists) and the database file itself
/// (0600; tightened if it exists), and tightens an existing `-wal` and `-shm` to 0600.
pub fn prepare_db(db: &Path) -> std::io::Result<()> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        private_dir(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    drop(opts.open(db)?);
    private_file(db)?;
    for suffix in ["-wal", "-shm"] {
        let mut side = db.as_os_str().to_owned();
        side.push(suffix);
        let side = std::path::PathBuf::from(side);
        if side.exists() {
            private_file(&side)?;
        }
    }
    Ok(())
}

/// Creates `dir` with mode 0700, or tightens it to 0700.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)?;
    #[cfg(unix)]
    tighten(dir, 0o700)?;
    Ok(())
}

/// Tightens the existing file `path` to 0600.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    tighten(path, 0o600)?;
    let _ = path;
    Ok(())
}

#[cfg(unix)]
fn tighten(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::metadata(path)?.permissions().mode() & 0o777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}
