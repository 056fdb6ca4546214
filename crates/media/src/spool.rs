//! Spooling an upload: the body streams into a temp file while it is hashed and counted,
//! within the size limit and the declared length. Whatever goes wrong — a body error, too
//! many bytes, a length mismatch, the call being dropped — the temp file is removed.

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
};

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use trellis_core::{Error, Result};
use trellis_proto::media::ByteStream;

/// Chunks larger than this are hashed on the blocking pool rather than the runtime.
const INLINE_HASH_BYTES: usize = 256 * 1024;

/// A complete upload in the spool, not yet in the store.
pub(crate) struct Spooled {
    pub file: TempFile,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    pub size: u64,
}

/// Writes `body` to a new file in `dir`. Fails with `M_TOO_LARGE` past `limit` bytes and with
/// `M_INVALID_PARAM` when `declared` is set and the body's length differs; a body error is
/// returned as is. On any failure the temp file is gone before this returns.
pub(crate) async fn spool(dir: &Path, mut body: ByteStream, limit: u64, declared: Option<u64>) -> Result<Spooled> {
    let temp = TempFile::new(dir);
    let result = async {
        let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(temp.path()).await?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if chunk.is_empty() {
                continue;
            }
            size += chunk.len() as u64;
            check_length(size, limit, declared)?;
            hasher = hash_chunk(hasher, chunk.clone()).await?;
            file.write_all(&chunk).await?;
        }
        if let Some(declared) = declared.filter(|&d| d != size) {
            return Err(length_mismatch(declared, size));
        }
        file.flush().await?;
        file.sync_all().await?;
        Ok((hex::encode(hasher.finalize()), size))
    }
    .await;
    match result {
        Ok((sha256, size)) => Ok(Spooled { file: temp, sha256, size }),
        Err(e) => {
            temp.remove().await;
            Err(e)
        }
    }
}

/// Refuses a body that has grown to `size` bytes past the limit or the declared length.
fn check_length(size: u64, limit: u64, declared: Option<u64>) -> Result<()> {
    if size > limit {
        return Err(too_large(limit));
    }
    match declared {
        Some(declared) if size > declared => Err(length_mismatch(declared, size)),
        _ => Ok(()),
    }
}

pub(crate) fn too_large(limit: u64) -> Error {
    Error::too_large(format!("upload exceeds the limit of {limit} bytes"))
}

fn length_mismatch(declared: u64, size: u64) -> Error {
    let got = if size > declared { "more".to_owned() } else { size.to_string() };
    Error::invalid_param(format!("Content-Length was {declared} but the body had {got} bytes"))
}

async fn hash_chunk(mut hasher: Sha256, chunk: Bytes) -> Result<Sha256> {
    if chunk.len() <= INLINE_HASH_BYTES {
        hasher.update(&chunk);
        return Ok(hasher);
    }
    Ok(tokio::task::spawn_blocking(move || {
        hasher.update(&chunk);
        hasher
    })
    .await?)
}

/// A spool file that is removed when dropped (a cancelled upload) unless it was kept.
pub(crate) struct TempFile(Option<PathBuf>);

impl TempFile {
    /// A fresh name in `dir` (the file is not created).
    pub fn new(dir: &Path) -> TempFile {
        TempFile(Some(dir.join(format!("upload-{}", uuid::Uuid::new_v4().simple()))))
    }

    pub fn path(&self) -> &Path {
        self.0.as_deref().expect("temp file is live until consumed")
    }

    /// The file has been moved away (into the store): nothing left to remove.
    pub fn kept(mut self) {
        self.0 = None;
    }

    /// Removes the file now.
    pub async fn remove(mut self) {
        if let Some(path) = self.0.take()
            && let Err(e) = tokio::fs::remove_file(&path).await
            && e.kind() != ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "media spool file not removed");
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let Some(path) = self.0.take() else { return };
        let remove = move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), error = %e, "media spool file not removed");
            }
            _ => {}
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream;
    use trellis_core::ErrorCode;

    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn temp_dir() -> Dir {
        let dir = std::env::temp_dir().join(format!("trellis-spool-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
    fn body(chunks: Vec<Result<&'static [u8]>>) -> ByteStream {
        Box::pin(stream::iter(chunks.into_iter().map(|c| c.map(Bytes::from_static))))
    }
    fn files_in(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn length_rules() {
        assert!(check_length(10, 10, None).is_ok());
        assert!(check_length(10, 10, Some(10)).is_ok());
        assert!(check_length(5, 10, Some(10)).is_ok());
        assert_eq!(check_length(11, 10, None).unwrap_err().code(), ErrorCode::TooLarge);
        assert_eq!(check_length(11, 10, Some(20)).unwrap_err().code(), ErrorCode::TooLarge);
        assert_eq!(check_length(6, 10, Some(5)).unwrap_err().code(), ErrorCode::InvalidParam);
    }

    #[tokio::test]
    async fn hashes_counts_and_keeps_the_bytes() {
        let dir = temp_dir();
        let s = spool(&dir.0, body(vec![Ok(b"a"), Ok(b""), Ok(b"bc")]), 3, Some(3)).await.unwrap();
        assert_eq!(s.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(s.size, 3);
        assert_eq!(std::fs::read(s.file.path()).unwrap(), b"abc");
        s.file.remove().await;
        assert_eq!(files_in(&dir.0), 0);
    }

    #[tokio::test]
    async fn big_chunks_hash_the_same() {
        let dir = temp_dir();
        let data: &'static [u8] = Box::leak(vec![7u8; INLINE_HASH_BYTES * 2 + 1].into_boxed_slice());
        let s = spool(&dir.0, body(vec![Ok(data)]), u64::MAX, None).await.unwrap();
        assert_eq!(s.sha256, hex::encode(Sha256::digest(data)));
        assert_eq!(s.size, data.len() as u64);
    }

    #[tokio::test]
    async fn failures_leave_no_file() {
        let dir = temp_dir();
        let cases: Vec<(ByteStream, u64, Option<u64>, ErrorCode)> = vec![
            (body(vec![Ok(b"abc"), Ok(b"d")]), 3, None, ErrorCode::TooLarge),
            (body(vec![Ok(b"abc"), Err(Error::forbidden("broken"))]), 10, None, ErrorCode::Forbidden),
            (body(vec![Ok(b"abc")]), 10, Some(4), ErrorCode::InvalidParam),
            (body(vec![Ok(b"abc"), Ok(b"de")]), 10, Some(4), ErrorCode::InvalidParam),
        ];
        for (b, limit, declared, code) in cases {
            let err = spool(&dir.0, b, limit, declared).await.err().expect("must fail");
            assert_eq!(err.code(), code);
            assert_eq!(files_in(&dir.0), 0, "{code:?} left a file behind");
        }
    }

    #[tokio::test]
    async fn dropped_temp_files_are_removed() {
        let dir = temp_dir();
        let s = spool(&dir.0, body(vec![Ok(b"abc")]), 10, None).await.unwrap();
        let path = s.file.path().to_owned();
        assert!(path.exists());
        drop(s);
        for _ in 0..100 {
            if !path.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!path.exists());
    }
}
