//! Secrets generated for the embedded mode and kept under the data directory, so that a
//! restart keeps sessions and stored tokens readable. Production sets real ones instead.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use rand::RngCore;

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
