//! Secrets generated for the embedded mode and kept under the data directory, so that a
//! restart keeps sessions and stored tokens readable. Production sets real ones instead.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use rand::RngCore;

/// Creates `dir` (and its parents) and makes it private to this user (0700): it holds the
/// embedded database and generated secrets.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes the SQLite database at `path` private (0600), creating it empty if it does not exist,
/// so that SQLite creates its `-wal` and `-shm` files with the same mode; existing ones are
/// tightened too.
pub fn private_sqlite_file(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    drop(opts.open(path)?);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Reads the secret in `dir/name`, or creates it with 32 random bytes (base64) and mode 0600.
/// Returns the secret and whether it was created now.
pub fn load_or_create(dir: &Path, name: &str) -> std::io::Result<(String, bool)> {
    load_or_create_with(dir, name, || {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    })
}

/// Like [`load_or_create`], with the new secret made by `generate`.
pub fn load_or_create_with(dir: &Path, name: &str, generate: impl FnOnce() -> String) -> std::io::Result<(String, bool)> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok((s.trim().to_string(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secret = generate();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(&path) {
        Ok(mut f) => {
            f.write_all(secret.as_bytes())?;
            f.sync_all()?;
            Ok((secret, true))
        }
        // Another process created it between our read and our create: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((std::fs::read_to_string(&path)?.trim().to_string(), false)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(unix)]
    #[test]
    fn the_data_dir_and_database_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/data");
        super::create_private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let db = dir.join("q.db");
        std::fs::write(dir.join("q.db-wal"), b"").unwrap();
        std::fs::set_permissions(dir.join("q.db-wal"), std::fs::Permissions::from_mode(0o644)).unwrap();
        super::private_sqlite_file(&db).unwrap();
        for f in ["q.db", "q.db-wal"] {
            assert_eq!(std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
        }
    }

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, created) = super::load_or_create(dir.path(), "s").unwrap();
        assert!(created);
        let (b, created) = super::load_or_create(dir.path(), "s").unwrap();
        assert!(!created);
        assert_eq!(a, b);
        assert_eq!(a.len(), 44);
    }
}
