//! One update round at a time per device: a lock file holding the owner's
//! process ID, created with `O_EXCL`. A lock left by a process that no
//! longer exists (killed, power lost) is taken over.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::UpdateError;
use crate::AgentError;

/// Held for the duration of a round; removes the file when dropped.
pub(crate) struct UpdateLock {
    path: PathBuf,
}

impl UpdateLock {
    /// Takes the lock at `path`, or [`UpdateError::Busy`] if a live process holds it.
    pub(crate) fn acquire(path: &Path) -> Result<UpdateLock, UpdateError> {
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(mut file) => {
                    file.write_all(std::process::id().to_string().as_bytes())
                        .and_then(|()| file.sync_all())
                        .map_err(|e| AgentError::io("write", path, e))?;
                    return Ok(UpdateLock {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(path)
                        .ok()
                        .and_then(|t| t.trim().parse::<u32>().ok());
                    let alive = owner.is_some_and(|pid| {
                        pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()
                    });
                    if alive {
                        return Err(UpdateError::Busy);
                    }
                    tracing::info!(owner = ?owner, "taking over an update lock its owner left behind");
                    let _ = std::fs::remove_file(path);
                }
                Err(e) => return Err(AgentError::io("create", path, e).into()),
            }
        }
        Err(UpdateError::Busy)
    }
}

impl Drop for UpdateLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_locks_refuse_and_stale_ones_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        // A lock of a process that does not exist (PIDs stay below 2^22).
        std::fs::write(&path, "4294967").unwrap();
        let held = UpdateLock::acquire(&path).unwrap();
        // PID 1 is always alive.
        drop(held);
        std::fs::write(&path, "1").unwrap();
        assert!(matches!(UpdateLock::acquire(&path), Err(UpdateError::Busy)));
        std::fs::remove_file(&path).unwrap();
        let held = UpdateLock::acquire(&path).unwrap();
        assert!(path.exists());
        drop(held);
        assert!(!path.exists());
    }
}
