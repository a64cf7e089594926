//! File helpers: private directories and files, permission checks,
//! crash-safe writes, bounded reads.
//!
//! Every file the agent writes goes through a temporary file in the same
//! directory, created `0600` with `O_EXCL`, written, fsynced, renamed into
//! place, and the directory fsynced: a power loss leaves the old file or the
//! new one, never half of either. Leftover temp files (`.NAME.tmp-HEX`) are
//! never read.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::AgentError;

/// Mode of every directory the agent creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every file the agent creates.
pub(crate) const FILE_MODE: u32 = 0o600;
/// Bits that must be clear: nothing for group or others.
const GROUP_OTHER_BITS: u32 = 0o077;
const TEMP_MARKER: &str = ".tmp-";

/// Creates `dir` (and parents) if missing, then sets exactly 0700.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), AgentError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(AgentError::io(
                "use",
                dir,
                io::Error::other("exists and is not a directory"),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(|e| AgentError::io("create directory", dir, e))?;
            sync_dir(parent_of(dir))?;
        }
        Err(e) => return Err(AgentError::io("inspect", dir, e)),
    }
    fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
        .map_err(|e| AgentError::io("set permissions of", dir, e))
}

/// Checks `path` exists and is closed to group and others.
pub(crate) fn check_private(path: &Path) -> Result<(), AgentError> {
    let meta = fs::metadata(path).map_err(|e| AgentError::io("inspect", path, e))?;
    check_mode(path, &meta)
}

fn check_mode(path: &Path, meta: &fs::Metadata) -> Result<(), AgentError> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & GROUP_OTHER_BITS != 0 {
        return Err(AgentError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Whether anything (even a dangling symlink) is at `path`.
pub(crate) fn exists(path: &Path) -> Result<bool, AgentError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(AgentError::io("inspect", path, e)),
    }
}

/// Reads at most `max_len` bytes of a regular file; `None` if it is missing.
/// A longer file is [`AgentError::CorruptState`]. With `private`, the file
/// must also be closed to group and others.
pub(crate) fn read_bounded(
    path: &Path,
    max_len: u64,
    private: bool,
) -> Result<Option<Vec<u8>>, AgentError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AgentError::io("read", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| AgentError::io("inspect", path, e))?;
    if !meta.is_file() {
        return Err(AgentError::corrupt(path, "not a regular file"));
    }
    if private {
        check_mode(path, &meta)?;
    }
    let mut contents = Vec::new();
    file.take(max_len.saturating_add(1))
        .read_to_end(&mut contents)
        .map_err(|e| AgentError::io("read", path, e))?;
    if contents.len() as u64 > max_len {
        return Err(AgentError::corrupt(
            path,
            format!("longer than the {max_len} bytes it may hold"),
        ));
    }
    Ok(Some(contents))
}

/// Reads a UTF-8 text file of at most `max_len` bytes; `None` if missing.
pub(crate) fn read_text(path: &Path, max_len: u64) -> Result<Option<String>, AgentError> {
    match read_bounded(path, max_len, false)? {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| AgentError::corrupt(path, "not UTF-8 text")),
    }
}

/// Writes `contents` to `dir/name` atomically (mode 0600), replacing any
/// existing file. Durable when it returns.
pub(crate) fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<(), AgentError> {
    let temp = write_temp(dir, name, contents)?;
    let dest = dir.join(name);
    if let Err(e) = fs::rename(&temp, &dest) {
        let _ = fs::remove_file(&temp);
        return Err(AgentError::io("write", dest, e));
    }
    sync_dir(dir)
}

/// Makes `dir/name` another name of the file `source` (a hard link),
/// replacing what `dir/name` was in one atomic rename. Durable when it
/// returns. Both must be on one file system (they are: the state directory).
pub(crate) fn link_atomic(source: &Path, dir: &Path, name: &str) -> Result<(), AgentError> {
    let temp = dir.join(temp_name(name));
    fs::hard_link(source, &temp).map_err(|e| AgentError::io("link", &temp, e))?;
    let dest = dir.join(name);
    if let Err(e) = fs::rename(&temp, &dest) {
        let _ = fs::remove_file(&temp);
        return Err(AgentError::io("switch", dest, e));
    }
    sync_dir(dir)
}

/// Writes `contents` to `dir/name` atomically unless it exists; returns
/// whether it wrote (a hard link makes check-and-create one step).
pub(crate) fn write_new(dir: &Path, name: &str, contents: &[u8]) -> Result<bool, AgentError> {
    let temp = write_temp(dir, name, contents)?;
    let dest = dir.join(name);
    let linked = fs::hard_link(&temp, &dest);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => sync_dir(dir).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(AgentError::io("create", dest, e)),
    }
}

fn write_temp(dir: &Path, name: &str, contents: &[u8]) -> Result<PathBuf, AgentError> {
    let temp = dir.join(temp_name(name));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&temp)
        .map_err(|e| AgentError::io("create", &temp, e))?;
    let written = file
        .set_permissions(Permissions::from_mode(FILE_MODE))
        .and_then(|()| file.write_all(contents))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(AgentError::io("write", temp, e));
    }
    Ok(temp)
}

/// Removes a file if present; durable when it returns.
pub(crate) fn remove(dir: &Path, name: &str) -> Result<(), AgentError> {
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AgentError::io("remove", path, e)),
    }
}

/// Whether `name` is one of our temp files (never state).
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARKER)
}

fn temp_name(name: &str) -> String {
    let suffix = match sevenfold_rot::random_nonce() {
        Ok(bytes) => hex::encode(bytes.get(..8).unwrap_or_default()),
        // Uniqueness, not secrecy, is what matters here.
        Err(_) => format!(
            "{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ),
    };
    format!(".{name}{TEMP_MARKER}{suffix}")
}

/// Fsyncs a directory, so that entries created or renamed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), AgentError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AgentError::io("sync", dir, e))
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn atomic_writes_are_private_and_leave_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f", b"one").unwrap();
        write_atomic(dir.path(), "f", b"two").unwrap();
        assert_eq!(mode(&dir.path().join("f")), FILE_MODE);
        assert!(!write_new(dir.path(), "f", b"three").unwrap());
        assert!(write_new(dir.path(), "g", b"four").unwrap());
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
        assert!(is_temp_name(&temp_name("f")));
        assert!(!is_temp_name("f"));
    }

    #[test]
    fn bounded_reads_refuse_long_or_exposed_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert!(read_bounded(&path, 4, true).unwrap().is_none());
        write_atomic(dir.path(), "f", b"12345").unwrap();
        assert!(read_bounded(&path, 5, true).unwrap().is_some());
        assert!(matches!(
            read_bounded(&path, 4, true),
            Err(AgentError::CorruptState { .. })
        ));
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_bounded(&path, 5, true),
            Err(AgentError::InsecurePermissions { mode: 0o644, .. })
        ));
        assert!(read_bounded(&path, 5, false).unwrap().is_some());
    }
}
