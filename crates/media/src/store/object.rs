//! Blobs in an object store (the `object_store` crate): an S3-compatible bucket in production,
//! the in-memory store in tests. Keys are `[<prefix>/]<aa>/<bb>/<sha256hex>`. Uploads are
//! spooled to a local directory first (the hash names the blob, so it is known only at the
//! end), then sent in parts of [`PART_BYTES`], at most two in flight: memory per upload stays
//! a few parts, whatever the file size.

use std::{
    ops::RangeInclusive,
    path::{Path as FsPath, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart, path::Path};
use tokio::io::AsyncReadExt;
use trellis_core::{Error, Result};
use trellis_proto::media::ByteStream;

use super::{BlobStore, is_sha256_hex, rechunk};

/// Size of each part of a multipart upload (S3's smallest allowed part is 5 MiB). A file
/// up to this size goes up in one request.
const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts uploading at once.
const PARTS_IN_FLIGHT: usize = 2;

/// Blobs in any [`ObjectStore`].
#[derive(Debug, Clone)]
pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
    prefix: Option<String>,
    spool: PathBuf,
}

impl ObjectBlobStore {
    /// Blobs in `store` under `prefix`, with uploads spooled in `spool` (created if missing).
    pub async fn new(store: Arc<dyn ObjectStore>, prefix: Option<String>, spool: PathBuf) -> Result<ObjectBlobStore> {
        tokio::fs::create_dir_all(&spool).await?;
        let prefix = prefix.map(|p| p.trim_matches('/').to_owned()).filter(|p| !p.is_empty());
        Ok(ObjectBlobStore { store, prefix, spool })
    }

    /// An S3-compatible bucket as configured; credentials come from the usual `AWS_*`
    /// environment variables (or the instance's role).
    #[cfg(feature = "s3")]
    pub async fn s3(settings: &crate::settings::S3Settings, spool: PathBuf) -> Result<ObjectBlobStore> {
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_allow_http(settings.allow_http);
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            builder = builder.with_access_key_id(id).with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|e| Error::internal(format!("S3 media store: {e}")))?;
        ObjectBlobStore::new(Arc::new(store), settings.prefix.clone(), spool).await
    }

    /// The key of blob `sha256`; refuses anything that is not a lowercase hex SHA-256.
    pub fn key(&self, sha256: &str) -> Result<Path> {
        if !is_sha256_hex(sha256) {
            return Err(Error::internal(format!("not a blob name: {sha256:?}")));
        }
        let rel = format!("{}/{}/{sha256}", &sha256[0..2], &sha256[2..4]);
        Ok(Path::from(match &self.prefix {
            Some(p) => format!("{p}/{rel}"),
            None => rel,
        }))
    }
}

fn internal(e: object_store::Error) -> Error {
    Error::internal(e)
}

#[async_trait::async_trait]
impl BlobStore for ObjectBlobStore {
    fn spool_dir(&self) -> &FsPath {
        &self.spool
    }

    async fn exists(&self, sha256: &str) -> Result<bool> {
        match self.store.head(&self.key(sha256)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(internal(e)),
        }
    }

    async fn delete(&self, sha256: &str) -> Result<()> {
        match self.store.delete(&self.key(sha256)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(internal(e)),
        }
    }

    async fn put(&self, sha256: &str, temp: &FsPath) -> Result<()> {
        let key = self.key(sha256)?;
        let mut file = tokio::fs::File::open(temp).await?;
        let size = file.metadata().await?.len();
        if size <= PART_BYTES as u64 {
            let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            file.read_to_end(&mut data).await?;
            self.store.put(&key, Bytes::from(data).into()).await.map_err(internal)?;
        } else {
            let upload = self.store.put_multipart(&key).await.map_err(internal)?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            let sent = async {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = file.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    writer.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(internal)?;
                    writer.write(&buf[..n]);
                }
                Ok::<_, Error>(())
            }
            .await;
            match sent {
                Ok(()) => {
                    writer.finish().await.map_err(internal)?;
                }
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            }
        }
        tokio::fs::remove_file(temp).await?;
        Ok(())
    }

    async fn open(&self, sha256: &str, range: Option<RangeInclusive<u64>>) -> Result<Option<ByteStream>> {
        let options = GetOptions {
            range: range.map(|r| GetRange::Bounded(*r.start()..r.end().saturating_add(1))),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&self.key(sha256)?, options).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(internal(e)),
        };
        let body = result.into_stream().map_err(internal).boxed();
        Ok(Some(rechunk(body)))
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    const HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[tokio::test]
    async fn keys_and_round_trip_in_parts() {
        let spool = std::env::temp_dir().join(format!("trellis-os-{}", uuid::Uuid::new_v4().simple()));
        let store =
            ObjectBlobStore::new(Arc::new(InMemory::new()), Some("/media/".into()), spool.clone()).await.unwrap();
        assert_eq!(store.key(HASH).unwrap().as_ref(), format!("media/e3/b0/{HASH}"));
        assert!(store.key("../x").is_err());
        assert!(!store.exists(HASH).await.unwrap());
        assert!(store.open(HASH, None).await.unwrap().is_none());

        // Larger than one part, so it goes up as a multipart upload.
        let data: Vec<u8> = (0..PART_BYTES * 2 + 12_345).map(|i| (i * 7 % 251) as u8).collect();
        let temp = spool.join("t");
        tokio::fs::write(&temp, &data).await.unwrap();
        store.put(HASH, &temp).await.unwrap();
        assert!(!temp.exists());
        assert!(store.exists(HASH).await.unwrap());
        let chunks: Vec<Bytes> = store.open(HASH, None).await.unwrap().unwrap().try_collect().await.unwrap();
        assert!(chunks.iter().all(|c| c.len() <= super::super::READ_CHUNK_BYTES));
        assert!(chunks.concat() == data);
        let part: Vec<Bytes> = store.open(HASH, Some(10..=70_000)).await.unwrap().unwrap().try_collect().await.unwrap();
        assert!(part.concat() == data[10..=70_000]);
        let _ = std::fs::remove_dir_all(spool);
    }
}
