//! The local filesystem blob store: `<root>/<aa>/<bb>/<sha256hex>`, uploads spooled in
//! `<root>/tmp/` so moving a finished upload into place is one atomic same-filesystem rename.

use std::{
    io::{ErrorKind, SeekFrom},
    ops::RangeInclusive,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use bytes::BytesMut;
use futures_util::stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use trellis_core::{Error, Result};
use trellis_proto::media::ByteStream;

use super::{BlobStore, READ_CHUNK_BYTES, is_sha256_hex};

/// Spool files untouched for this long are leftovers of a crashed process.
const STALE_SPOOL_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Blobs in a directory tree on a local (or mounted) filesystem.
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
    spool: PathBuf,
}

impl LocalBlobStore {
    /// Opens the store at `root`, creating it and its spool directory if needed, and clears
    /// stale spool files left behind by a crash.
    pub async fn open(root: impl Into<PathBuf>) -> Result<LocalBlobStore> {
        let root = root.into();
        let spool = root.join("tmp");
        tokio::fs::create_dir_all(&spool).await?;
        let store = LocalBlobStore { root, spool };
        store.clear_stale_spool().await?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `sha256` lives; refuses anything that is not a lowercase hex SHA-256,
    /// so no path can be built from other input.
    pub fn blob_path(&self, sha256: &str) -> Result<PathBuf> {
        if !is_sha256_hex(sha256) {
            return Err(Error::internal(format!("not a blob name: {sha256:?}")));
        }
        Ok(self.root.join(&sha256[0..2]).join(&sha256[2..4]).join(sha256))
    }

    async fn clear_stale_spool(&self) -> Result<()> {
        let mut entries = tokio::fs::read_dir(&self.spool).await?;
        let mut removed = 0u64;
        while let Some(entry) = entries.next_entry().await? {
            let meta = entry.metadata().await?;
            let age = meta.modified().ok().and_then(|m| SystemTime::now().duration_since(m).ok()).unwrap_or_default();
            if meta.is_file() && age > STALE_SPOOL_AGE {
                tokio::fs::remove_file(entry.path()).await?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "stale media spool files removed");
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl BlobStore for LocalBlobStore {
    fn spool_dir(&self) -> &Path {
        &self.spool
    }

    async fn exists(&self, sha256: &str) -> Result<bool> {
        Ok(tokio::fs::try_exists(self.blob_path(sha256)?).await?)
    }

    async fn delete(&self, sha256: &str) -> Result<()> {
        match tokio::fs::remove_file(self.blob_path(sha256)?).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn put(&self, sha256: &str, temp: &Path) -> Result<()> {
        let dest = self.blob_path(sha256)?;
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(temp, &dest).await?;
        Ok(())
    }

    async fn open(&self, sha256: &str, range: Option<RangeInclusive<u64>>) -> Result<Option<ByteStream>> {
        let mut file = match tokio::fs::File::open(self.blob_path(sha256)?).await {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut left = u64::MAX;
        if let Some(range) = range {
            file.seek(SeekFrom::Start(*range.start())).await?;
            left = range.end().saturating_sub(*range.start()).saturating_add(1);
        }
        let chunks = stream::try_unfold((file, left), |(mut file, left)| async move {
            if left == 0 {
                return Ok(None);
            }
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(READ_CHUNK_BYTES);
            let mut buf = BytesMut::with_capacity(want);
            let n = (&mut file).take(want as u64).read_buf(&mut buf).await?;
            Ok::<_, Error>((n > 0).then(|| (buf.freeze(), (file, left - n as u64))))
        });
        Ok(Some(Box::pin(chunks)))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt;

    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn temp_root() -> Dir {
        Dir(std::env::temp_dir().join(format!("trellis-blobs-{}", uuid::Uuid::new_v4().simple())))
    }

    const HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[tokio::test]
    async fn layout_and_round_trip() {
        let dir = temp_root();
        let store = LocalBlobStore::open(&dir.0).await.unwrap();
        assert!(store.spool_dir().is_dir());
        assert_eq!(store.spool_dir(), dir.0.join("tmp"));
        let path = store.blob_path(HASH).unwrap();
        assert_eq!(path, dir.0.join("e3").join("b0").join(HASH));
        assert!(store.blob_path("../../etc/passwd").is_err());

        assert!(!store.exists(HASH).await.unwrap());
        assert!(store.open(HASH, None).await.unwrap().is_none());

        // Big enough to need several reads.
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let temp = store.spool_dir().join("t1");
        tokio::fs::write(&temp, &data).await.unwrap();
        store.put(HASH, &temp).await.unwrap();
        assert!(!temp.exists());
        assert!(path.is_file());
        assert!(store.exists(HASH).await.unwrap());

        let chunks: Vec<_> = store.open(HASH, None).await.unwrap().unwrap().try_collect().await.unwrap();
        assert!(chunks.len() >= 4, "read in {} chunks", chunks.len());
        assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= READ_CHUNK_BYTES));
        assert_eq!(chunks.concat(), data);

        for (start, end) in [(0u64, 0u64), (5, 70_000), (199_999, 199_999), (65_536, 131_071), (100, 500_000)] {
            let chunks: Vec<_> =
                store.open(HASH, Some(start..=end)).await.unwrap().unwrap().try_collect().await.unwrap();
            assert!(chunks.iter().all(|c| c.len() <= READ_CHUNK_BYTES));
            let want = &data[start as usize..=(end as usize).min(data.len() - 1)];
            assert!(chunks.concat() == want, "range {start}-{end}");
        }
    }

    #[tokio::test]
    async fn fresh_spool_files_survive_reopening() {
        let dir = temp_root();
        let store = LocalBlobStore::open(&dir.0).await.unwrap();
        let temp = store.spool_dir().join("in-flight");
        tokio::fs::write(&temp, b"x").await.unwrap();
        LocalBlobStore::open(&dir.0).await.unwrap();
        assert!(temp.exists(), "an upload in progress elsewhere must not be removed");
    }
}
