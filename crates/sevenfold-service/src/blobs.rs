//! Blob storage for image packages: a local directory (the embedded default).
//!
//! Blobs are immutable and named by key (`images/<tenant>/<digest>`). A blob
//! is written to a temporary file in the same directory tree, fsynced, and
//! renamed into place, so a reader never sees a partial blob and a crash
//! leaves at most a stray temporary file. An S3-compatible store for
//! scale-out would implement the same operations.

use std::io;
use std::path::{Path, PathBuf};

use tokio::fs;
use tokio::io::AsyncWriteExt;

/// Bytes per chunk when a blob is streamed out ([`BlobStore::stream`]).
const STREAM_CHUNK: usize = 256 * 1024;

/// A directory of immutable blobs.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
}

/// A blob being written; [`BlobStore::commit`] makes it visible.
#[derive(Debug)]
pub struct PendingBlob {
    path: PathBuf,
    file: fs::File,
    written: u64,
}

impl PendingBlob {
    /// Appends bytes.
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data).await?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.written
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// Waits until every byte written is in the file. tokio's `File`
    /// finishes writes in the background: without this, reading the file
    /// back (verification) can see less than was written.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.file.flush().await
    }

    /// Where the temporary file is (to read it back for verification,
    /// after [`PendingBlob::flush`]).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl BlobStore {
    /// Opens (creating if needed) a blob directory.
    pub async fn open(root: &Path) -> io::Result<BlobStore> {
        fs::create_dir_all(root.join("tmp")).await?;
        Ok(BlobStore {
            root: root.to_path_buf(),
        })
    }

    /// Starts a new blob in a temporary file.
    pub async fn begin(&self) -> io::Result<PendingBlob> {
        let name = format!("upload-{}", uuid::Uuid::new_v4());
        let path = self.root.join("tmp").join(name);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(PendingBlob {
            path,
            file,
            written: 0,
        })
    }

    /// Makes a pending blob durable under `key`. If the key exists, the
    /// existing blob is kept (blobs are content-addressed, so it is identical).
    pub async fn commit(&self, mut pending: PendingBlob, key: &str) -> io::Result<()> {
        pending.file.flush().await?;
        pending.file.sync_all().await?;
        let target = self.path_of(key)?;
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).await?;
        }
        fs::rename(&pending.path, &target).await?;
        if let Some(parent) = target.parent() {
            // Make the rename itself durable.
            fs::File::open(parent).await?.sync_all().await?;
        }
        Ok(())
    }

    /// Drops a pending blob.
    pub async fn abort(&self, pending: PendingBlob) {
        drop(pending.file);
        let _ = fs::remove_file(&pending.path).await;
    }

    /// Opens a committed blob for reading.
    pub async fn open_blob(&self, key: &str) -> io::Result<fs::File> {
        fs::File::open(self.path_of(key)?).await
    }

    /// The rest of an opened blob as a stream of large chunks, for an
    /// HTTP body. Each read of a tokio `File` is a trip to the blocking
    /// pool, and each chunk becomes a TLS write: the 4 KiB default made a
    /// 100 MB download cost the server about a second of CPU.
    pub fn stream(file: fs::File) -> tokio_util::io::ReaderStream<fs::File> {
        tokio_util::io::ReaderStream::with_capacity(file, STREAM_CHUNK)
    }

    /// The file holding `key`; refuses keys that could escape the root.
    fn path_of(&self, key: &str) -> io::Result<PathBuf> {
        let safe = !key.is_empty()
            && key.split('/').all(|part| {
                !part.is_empty()
                    && part != "."
                    && part != ".."
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            });
        if !safe {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid blob key {key:?}"),
            ));
        }
        Ok(self.root.join("blobs").join(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn write_commit_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let mut blob = store.begin().await.unwrap();
        blob.write(b"hello ").await.unwrap();
        blob.write(b"world").await.unwrap();
        assert_eq!(blob.len(), 11);
        store.commit(blob, "images/t1/abc").await.unwrap();
        let mut text = String::new();
        store
            .open_blob("images/t1/abc")
            .await
            .unwrap()
            .read_to_string(&mut text)
            .await
            .unwrap();
        assert_eq!(text, "hello world");
    }

    #[tokio::test]
    async fn keys_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        for key in ["../x", "a//b", "", "/etc/passwd", "a/./b", "a b"] {
            assert!(store.open_blob(key).await.is_err(), "{key}");
        }
    }

    #[tokio::test]
    async fn aborted_blob_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let blob = store.begin().await.unwrap();
        let path = blob.path().to_path_buf();
        store.abort(blob).await;
        assert!(!path.exists());
    }
}
