//! Where media bytes live: a narrow, content-addressed blob store. Blobs are named by the
//! lowercase hex SHA-256 of their content, so identical uploads are stored once. Backends:
//! [`LocalBlobStore`] (a directory tree, the default) and [`ObjectBlobStore`] (any
//! `object_store`: S3-compatible buckets in production, memory in tests).

mod local;
mod object;

use std::{ops::RangeInclusive, path::Path};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use trellis_core::{Error, Result};
use trellis_proto::media::ByteStream;

pub use local::LocalBlobStore;
pub use object::ObjectBlobStore;

/// Size of the chunks a blob is read back in.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A content-addressed store of immutable blobs.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// A local directory where uploads are spooled before [`BlobStore::put`]; for the local
    /// backend it is on the same filesystem as the blobs, so `put` is an atomic rename.
    fn spool_dir(&self) -> &Path;

    /// Whether a blob with this hash is stored.
    async fn exists(&self, sha256: &str) -> Result<bool>;

    /// Stores the complete file at `temp` (inside [`BlobStore::spool_dir`]) as the blob
    /// `sha256`, which must be the hash of its content. On success `temp` is gone. Storing a
    /// blob that already exists is harmless: the content is the same.
    async fn put(&self, sha256: &str, temp: &Path) -> Result<()>;

    /// The blob's bytes (all of them, or the inclusive byte `range`) in chunks of at most
    /// [`READ_CHUNK_BYTES`], or `None` if it is not stored.
    async fn open(&self, sha256: &str, range: Option<RangeInclusive<u64>>) -> Result<Option<ByteStream>>;

    /// Removes the blob (an admin deleted the last media naming it); one already gone is
    /// no error.
    async fn delete(&self, sha256: &str) -> Result<()>;
}

/// The name of the blob holding `data`: its SHA-256, in hex.
pub(crate) fn blob_name(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Stores `data` (small: a thumbnail, a preview image) as a blob and returns its name.
pub(crate) async fn put_bytes(store: &dyn BlobStore, data: &[u8]) -> Result<String> {
    let sha256 = blob_name(data);
    if store.exists(&sha256).await? {
        return Ok(sha256);
    }
    let temp = crate::spool::TempFile::new(store.spool_dir());
    tokio::fs::write(temp.path(), data).await?;
    store.put(&sha256, temp.path()).await?;
    temp.kept();
    Ok(sha256)
}

/// The whole blob in memory, refusing one larger than `limit` bytes.
pub(crate) async fn read_all(store: &dyn BlobStore, sha256: &str, limit: u64) -> Result<Vec<u8>> {
    let mut body = store.open(sha256, None).await?.ok_or_else(|| Error::internal(format!("blob {sha256} missing")))?;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(Error::too_large("Content is too large to process"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Cuts a stream's chunks down to at most [`READ_CHUNK_BYTES`] each.
pub(crate) fn rechunk(body: ByteStream) -> ByteStream {
    Box::pin(
        body.map_ok(|chunk: Bytes| {
            let pieces: Vec<Result<Bytes>> = (0..chunk.len())
                .step_by(READ_CHUNK_BYTES)
                .map(|at| Ok(chunk.slice(at..(at + READ_CHUNK_BYTES).min(chunk.len()))))
                .collect();
            futures_util::stream::iter(pieces)
        })
        .try_flatten(),
    )
}

/// Whether `s` looks like a blob name: 64 lowercase hex digits.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_names() {
        let ok = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(is_sha256_hex(ok));
        assert!(!is_sha256_hex(&ok.to_uppercase()));
        assert!(!is_sha256_hex(&ok[1..]));
        assert!(!is_sha256_hex(&format!("{ok}0")));
        assert!(!is_sha256_hex(&format!("../{}", &ok[3..])));
        assert!(!is_sha256_hex(""));
    }
}
