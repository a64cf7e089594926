//! `MutableStorage`: one private directory per component ID, preopened as
//! the app's only file system, and the measure its quota is enforced on.
//!
//! The directory is named by the component ID (not the version), so it
//! survives updates and restarts; it is made with mode 0700 and no other app
//! is given it. Usage is counted as the bytes of every file plus
//! [`ENTRY_COST`] per directory entry (so that a flood of empty files is
//! bounded too), walking the tree without following links.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::error::CompartmentError;

/// What each file, directory or link costs besides its bytes.
pub const ENTRY_COST: u64 = 128;

/// Deepest directory nesting counted (deeper trees are refused as full).
const MAX_DEPTH: usize = 32;

/// The directory holding every app's storage.
#[derive(Debug, Clone)]
pub struct StorageArea {
    root: PathBuf,
}

impl StorageArea {
    /// Storage under `root` (created with mode 0700 if missing).
    ///
    /// # Errors
    /// [`CompartmentError::Io`] if it cannot be made.
    pub fn new(root: &Path) -> Result<StorageArea, CompartmentError> {
        create_private_dir(root)?;
        Ok(StorageArea {
            root: root.to_path_buf(),
        })
    }

    /// The app's private directory, created if missing.
    ///
    /// # Errors
    /// [`CompartmentError::Io`] if it cannot be made.
    pub fn dir_for(&self, component_id: Uuid) -> Result<PathBuf, CompartmentError> {
        let dir = self.root.join(component_id.hyphenated().to_string());
        create_private_dir(&dir)?;
        Ok(dir)
    }
}

fn create_private_dir(dir: &Path) -> Result<(), CompartmentError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CompartmentError::io("create", dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| CompartmentError::io("restrict", dir, e))
}

/// Bytes used in `dir`: file sizes plus [`ENTRY_COST`] per entry.
///
/// # Errors
/// An I/O error reading the tree, or `Other` beyond [`MAX_DEPTH`] levels.
pub fn usage(dir: &Path) -> io::Result<u64> {
    fn walk(dir: &Path, depth: usize) -> io::Result<u64> {
        if depth > MAX_DEPTH {
            return Err(io::Error::other("storage nested too deeply"));
        }
        let mut total: u64 = 0;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?; // does not follow links
            total = total.saturating_add(ENTRY_COST);
            if meta.is_dir() {
                total = total.saturating_add(walk(&entry.path(), depth + 1)?);
            } else {
                total = total.saturating_add(meta.len());
            }
        }
        Ok(total)
    }
    walk(dir, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_bytes_and_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let area = StorageArea::new(&tmp.path().join("storage")).unwrap();
        let dir = area.dir_for(Uuid::from_u128(1)).unwrap();
        assert_eq!(usage(&dir).unwrap(), 0);
        fs::write(dir.join("a"), [0u8; 1000]).unwrap();
        fs::create_dir(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/b"), [0u8; 10]).unwrap();
        assert_eq!(usage(&dir).unwrap(), 1010 + 3 * ENTRY_COST);
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Another component gets another directory.
        assert_ne!(area.dir_for(Uuid::from_u128(2)).unwrap(), dir);
    }
}
