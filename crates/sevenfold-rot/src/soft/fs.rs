//! File-system helpers of the soft root of trust: private (0700/0600)
//! directories and files, permission checks, and crash-safe writes.
//!
//! Every write of state goes through a temporary file in the same directory:
//! the temp file is created `0600` with `O_EXCL` (never briefly readable by
//! others, never someone else's file), written, fsynced, then moved into place
//! and the directory fsynced. A crash at any point leaves either the old file
//! or the new one, plus perhaps a stale temp file that [`remove_stale_temps`]
//! deletes at the next open and that is never read as state.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::RotError;

/// Mode of every directory the soft root of trust creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every file the soft root of trust creates.
pub(crate) const FILE_MODE: u32 = 0o600;
/// Permission bits that must be clear on state: nothing for group or others.
const GROUP_OTHER_BITS: u32 = 0o077;
/// Marks a temp file name: `.<final name>.tmp-<16 hex digits>`.
const TEMP_MARKER: &str = ".tmp-";

/// Creates `dir` (and missing parents) if it does not exist, then sets its
/// mode to exactly 0700 whatever the umask or its previous mode was.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), RotError> {
    if !exists(dir)? {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|e| RotError::io(dir, e))?;
        // Make the new directory entry itself durable.
        sync_dir(parent_of(dir))?;
    }
    let meta = fs::metadata(dir).map_err(|e| RotError::io(dir, e))?;
    if !meta.is_dir() {
        return Err(RotError::io(dir, io::Error::other("not a directory")));
    }
    fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)).map_err(|e| RotError::io(dir, e))
}

/// Checks that `dir` is a directory closed to group and others.
pub(crate) fn check_private_dir(dir: &Path) -> Result<(), RotError> {
    let meta = fs::metadata(dir).map_err(|e| RotError::io(dir, e))?;
    if !meta.is_dir() {
        return Err(RotError::io(dir, io::Error::other("not a directory")));
    }
    check_mode(dir, &meta)
}

/// [`RotError::InsecurePermissions`] if group or others have any access.
fn check_mode(path: &Path, meta: &fs::Metadata) -> Result<(), RotError> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & GROUP_OTHER_BITS != 0 {
        return Err(RotError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Whether anything (even a dangling symlink) exists at `path`.
pub(crate) fn exists(path: &Path) -> Result<bool, RotError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(RotError::io(path, e)),
    }
}

/// Reads a whole state file: `None` if it does not exist.
///
/// Checks what was actually opened (no check-then-open race): it must be a
/// regular file closed to group and others, and at most `max_len` bytes long.
/// The buffer is allocated once and zeroized on drop, since it may hold a key.
pub(crate) fn read_private_file(
    path: &Path,
    max_len: usize,
) -> Result<Option<Zeroizing<Vec<u8>>>, RotError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RotError::io(path, e)),
    };
    let meta = file.metadata().map_err(|e| RotError::io(path, e))?;
    if !meta.is_file() {
        return Err(corrupt(path, "not a regular file"));
    }
    check_mode(path, &meta)?;
    let limit = max_len.saturating_add(1);
    let mut contents = Zeroizing::new(Vec::with_capacity(limit));
    file.take(limit as u64)
        .read_to_end(&mut contents)
        .map_err(|e| RotError::io(path, e))?;
    if contents.len() > max_len {
        return Err(corrupt(
            path,
            &format!("longer than the {max_len} bytes it may hold"),
        ));
    }
    Ok(Some(contents))
}

/// Writes `contents` to `dir/name` atomically, replacing any existing file.
/// Durable when it returns. (Counters call the two halves themselves, so
/// only tests need this.)
#[cfg(test)]
pub(crate) fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<(), RotError> {
    let temp = write_temp(dir, name, contents)?;
    commit_temp(&temp, &dir.join(name), dir)
}

/// Writes `contents` to `dir/name` atomically unless that file already exists.
///
/// Returns `false` (writing nothing) if it exists. Uses a hard link rather
/// than a rename so that the check and the creation are one atomic step:
/// two processes creating the same file cannot overwrite each other.
pub(crate) fn write_new(dir: &Path, name: &str, contents: &[u8]) -> Result<bool, RotError> {
    let temp = write_temp(dir, name, contents)?;
    let dest = dir.join(name);
    let linked = fs::hard_link(&temp, &dest);
    // The temp name is unused either way; a leftover is removed at next open.
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(RotError::io(dest, e)),
    }
}

/// First half of an atomic write: creates a new `0600` temp file beside
/// `dir/name`, writes `contents` and fsyncs it. Returns the temp file's path.
pub(crate) fn write_temp(dir: &Path, name: &str, contents: &[u8]) -> Result<PathBuf, RotError> {
    let temp = dir.join(temp_name(name)?);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&temp)
        .map_err(|e| RotError::io(&temp, e))?;
    let written = file
        // Exactly 0600 whatever the umask.
        .set_permissions(Permissions::from_mode(FILE_MODE))
        .and_then(|()| file.write_all(contents))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(RotError::io(&temp, e));
    }
    Ok(temp)
}

/// Second half of an atomic write: renames the temp file over `dest` and
/// fsyncs `dir` so that the rename itself survives a power loss.
pub(crate) fn commit_temp(temp: &Path, dest: &Path, dir: &Path) -> Result<(), RotError> {
    if let Err(e) = fs::rename(temp, dest) {
        let _ = fs::remove_file(temp);
        return Err(RotError::io(dest, e));
    }
    sync_dir(dir)
}

/// Deletes temp files left in `dir` by a crash mid-write. Best effort: a temp
/// file that cannot be removed is harmless, as it is never read.
pub(crate) fn remove_stale_temps(dir: &Path) -> Result<(), RotError> {
    let entries = fs::read_dir(dir).map_err(|e| RotError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| RotError::io(dir, e))?;
        if entry.file_name().to_str().is_some_and(is_temp_name) {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// fsyncs a directory, making renames and new entries in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), RotError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| RotError::io(dir, e))
}

/// [`RotError::CorruptState`] for `path`.
pub(crate) fn corrupt(path: &Path, reason: &str) -> RotError {
    RotError::CorruptState {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    }
}

/// A fresh, unguessable temp name for `name`, so concurrent writers never
/// share a temp file.
fn temp_name(name: &str) -> Result<String, RotError> {
    let mut suffix = [0u8; 8];
    aws_lc_rs::rand::fill(&mut suffix).map_err(|_| RotError::Crypto("random temp file name"))?;
    Ok(format!(".{name}{TEMP_MARKER}{}", hex::encode(suffix)))
}

fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARKER)
}

/// The directory holding `path` (`.` for a bare relative name).
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
    fn temp_names_are_recognised_and_unique() {
        let a = temp_name("counter-00001").unwrap();
        let b = temp_name("counter-00001").unwrap();
        assert_ne!(a, b);
        assert!(is_temp_name(&a), "{a}");
        assert!(!is_temp_name("counter-00001"));
        assert!(!is_temp_name("device-key.p8"));
    }

    #[test]
    fn private_dir_gets_0700_even_if_it_existed() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_private_dir(&sub).unwrap();
        assert_eq!(mode(&sub), 0o700);
        fs::set_permissions(&sub, Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            check_private_dir(&sub),
            Err(RotError::InsecurePermissions { mode: 0o755, .. })
        ));
        create_private_dir(&sub).unwrap();
        assert_eq!(mode(&sub), 0o700);
        check_private_dir(&sub).unwrap();
    }

    #[test]
    fn atomic_write_replaces_and_write_new_does_not() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f", b"one").unwrap();
        write_atomic(dir.path(), "f", b"two").unwrap();
        let path = dir.path().join("f");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            read_private_file(&path, 16).unwrap().unwrap().as_slice(),
            b"two"
        );
        assert!(!write_new(dir.path(), "f", b"three").unwrap());
        assert!(write_new(dir.path(), "g", b"four").unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read(dir.path().join("g")).unwrap(), b"four");
        // No temp file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn read_refuses_exposed_oversized_or_odd_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert!(read_private_file(&path, 4).unwrap().is_none());
        write_atomic(dir.path(), "f", b"12345").unwrap();
        assert!(read_private_file(&path, 5).unwrap().is_some());
        assert!(matches!(
            read_private_file(&path, 4),
            Err(RotError::CorruptState { .. })
        ));
        fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            read_private_file(&path, 5),
            Err(RotError::InsecurePermissions { mode: 0o640, .. })
        ));
        assert!(matches!(
            read_private_file(dir.path(), 5),
            Err(RotError::CorruptState { .. })
        ));
    }

    #[test]
    fn stale_temps_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "keep", b"x").unwrap();
        let temp = write_temp(dir.path(), "keep", b"y").unwrap();
        assert!(temp.exists());
        remove_stale_temps(dir.path()).unwrap();
        assert!(!temp.exists());
        assert_eq!(fs::read(dir.path().join("keep")).unwrap(), b"x");
    }
}
