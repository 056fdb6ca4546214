//! The contract suite's fixture: a media service (local or behind gRPC) over its own test
//! database and store directory (or a bucket of a real S3-compatible server), plus helpers
//! to build bodies and inspect what was stored.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use futures_util::{TryStreamExt, stream};
use sha2::{Digest, Sha256};
use trellis_core::{ErrorCode, Result};
use trellis_media::{Media, MediaSettings, S3Settings, StoreSettings};
use trellis_proto::media::{
    ByteStream, CreateRequest, DownloadMeta, DownloadRequest, MediaService, ThumbnailRequest, UploadMeta,
};
use trellis_storage::{Pool, testing::TestDb};
pub use trellis_testkit::contract::Via;
use trellis_testkit::contract::reach;

pub const SERVER: &str = "media.test";
pub const MB: u64 = 1024 * 1024;

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A media service, reached `via` its trait or gRPC, over its own database and store
/// directory (or bucket).
pub struct Fixture {
    svc: Arc<dyn MediaService>,
    pub media: Arc<Media>,
    pool: Pool,
    root: PathBuf,
    s3: Option<(Moto, S3Settings)>,
    _db: TestDb,
    _dir: TempDir,
}

impl Fixture {
    pub async fn new(via: Via, max_upload_bytes: u64) -> Fixture {
        Fixture::with(via, max_upload_bytes, |_| {}).await
    }

    /// With settings changed by `tweak` (quota, legacy access, previews, ...).
    pub async fn with(via: Via, max_upload_bytes: u64, tweak: impl FnOnce(&mut MediaSettings)) -> Fixture {
        Fixture::build(via, max_upload_bytes, None, tweak).await
    }

    /// Blobs in a bucket of a real S3-compatible server (moto), or `None` when `moto_server`
    /// is not installed and `TRELLIS_REQUIRE_S3` is not set.
    pub async fn s3(via: Via, max_upload_bytes: u64) -> Option<Fixture> {
        let moto = Moto::start()?;
        Some(Fixture::build(via, max_upload_bytes, Some(moto), |_| {}).await)
    }

    async fn build(
        via: Via,
        max_upload_bytes: u64,
        s3: Option<Moto>,
        tweak: impl FnOnce(&mut MediaSettings),
    ) -> Fixture {
        let db = TestDb::new().await.expect("test database");
        let dir = TempDir(std::env::temp_dir().join(format!("trellis-media-{}", uuid::Uuid::new_v4().simple())));
        let root = dir.0.join("store");
        let mut settings = MediaSettings::new(SERVER, root.clone(), max_upload_bytes);
        let s3 = match s3 {
            Some(moto) => {
                let bucket = moto.bucket().await;
                settings.store = StoreSettings::S3(bucket.clone());
                Some((moto, bucket))
            }
            None => None,
        };
        tweak(&mut settings);
        let media = Arc::new(Media::new(db.pool(4), settings).await.expect("media service"));
        assert!(root.join("tmp").is_dir(), "the spool exists from the start");
        let svc = reach(via, media.clone() as Arc<dyn MediaService>).await;
        Fixture { svc, media, pool: db.pool(2), root, s3, _db: db, _dir: dir }
    }

    pub fn svc(&self) -> &dyn MediaService {
        self.svc.as_ref()
    }

    /// Uploads and returns the media ID of the `mxc://` URI, checking the URI's shape.
    pub async fn upload(&self, meta: UploadMeta, body: ByteStream) -> Result<String> {
        let uri = self.svc.upload(meta, body).await?.content_uri;
        Ok(media_id_of(&uri))
    }

    /// `POST /create` for `user`: the media ID.
    pub async fn create(&self, user: &str) -> Result<String> {
        // Bounds taken around the call: a short expiry may already have passed when it answers
        // on a loaded machine, but it always lies after the request began.
        let before = trellis_core::time::now_ms();
        let resp = self.svc.create(CreateRequest { user_id: user.into() }).await?;
        let after = trellis_core::time::now_ms();
        assert!(resp.unused_expires_at > before && resp.unused_expires_at <= after + 24 * 3600 * 1000, "{resp:?}");
        Ok(media_id_of(&resp.content_uri))
    }

    /// `PUT /upload/{server}/{id}` of `data` as `user`.
    pub async fn put(&self, user: &str, media_id: &str, data: &[u8]) -> Result<()> {
        let mut m = meta("text/plain", Some("late.txt"), Some(data.len() as u64));
        m.user_id = user.into();
        m.server_name = Some(SERVER.into());
        m.media_id = Some(media_id.into());
        let uri = self.svc.upload(m, chunked(data, &[1000])).await?.content_uri;
        assert_eq!(uri, format!("mxc://{SERVER}/{media_id}"));
        Ok(())
    }

    /// An authenticated download of the whole file.
    pub async fn download(&self, server_name: &str, media_id: &str) -> Result<(DownloadMeta, Vec<Bytes>)> {
        self.fetch(DownloadRequest {
            server_name: server_name.into(),
            media_id: media_id.into(),
            authenticated: true,
            ..Default::default()
        })
        .await
    }

    pub async fn fetch(&self, req: DownloadRequest) -> Result<(DownloadMeta, Vec<Bytes>)> {
        let dl = self.svc.download(req).await?;
        let chunks = dl.body.try_collect().await?;
        Ok((dl.meta, chunks))
    }

    pub async fn thumbnail(
        &self,
        media_id: &str,
        width: u32,
        height: u32,
        method: &str,
        animated: bool,
    ) -> Result<(DownloadMeta, Vec<u8>)> {
        let req = ThumbnailRequest {
            server_name: SERVER.into(),
            media_id: media_id.into(),
            authenticated: true,
            timeout_ms: None,
            width,
            height,
            method: method.into(),
            animated,
        };
        let dl = self.svc.thumbnail(req).await?;
        let chunks: Vec<Bytes> = dl.body.try_collect().await?;
        Ok((dl.meta, chunks.concat()))
    }

    /// Keys of the objects in the S3 fixture's bucket.
    pub async fn bucket_keys(&self) -> Vec<String> {
        let (moto, bucket) = self.s3.as_ref().expect("an S3 fixture");
        let url = format!("{}/{}?list-type=2", moto.endpoint, bucket.bucket);
        let xml = reqwest::get(url).await.unwrap().text().await.unwrap();
        xml.split("<Key>").skip(1).filter_map(|s| s.split("</Key>").next()).map(str::to_owned).collect()
    }

    pub fn spool_files(&self) -> Vec<PathBuf> {
        files_under(&self.root.join("tmp"))
    }

    pub fn blob_files(&self) -> Vec<PathBuf> {
        files_under(&self.root).into_iter().filter(|p| !p.starts_with(self.root.join("tmp"))).collect()
    }

    pub fn blob_path(&self, data: &[u8]) -> PathBuf {
        let sha = hex::encode(Sha256::digest(data));
        self.root.join(&sha[..2]).join(&sha[2..4]).join(sha)
    }

    pub async fn rows(&self) -> i64 {
        self.count("SELECT count(*) FROM media").await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let client = self.pool.get().await.unwrap();
        client.query_one(sql, &[]).await.unwrap().get(0)
    }

    /// No row, no blob, no spool file — waiting a little, since over gRPC the server may still
    /// be cleaning up when the client already has its answer.
    pub async fn assert_nothing_stored(&self) {
        for _ in 0..200 {
            if self.spool_files().is_empty() && self.blob_files().is_empty() && self.rows().await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(self.spool_files(), Vec::<PathBuf>::new(), "spool files left");
        assert_eq!(self.blob_files(), Vec::<PathBuf>::new(), "blobs stored");
        assert_eq!(self.rows().await, 0, "media rows written");
    }
}

/// The media ID of one of our `mxc://` URIs, checking that it is unguessable.
pub fn media_id_of(uri: &str) -> String {
    let id = uri.strip_prefix(&format!("mxc://{SERVER}/")).unwrap_or_else(|| panic!("bad URI {uri}"));
    assert!(id.len() >= 24 && id.bytes().all(|b| b.is_ascii_alphanumeric()), "guessable ID {id:?}");
    id.to_owned()
}

/// A `moto_server` (an S3-compatible server from PyPI) on a free port, stopped when dropped.
pub struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Moto {
    /// `None` when `moto_server` is missing, unless `TRELLIS_REQUIRE_S3=1` makes that fatal.
    pub fn start() -> Option<Moto> {
        let required = std::env::var("TRELLIS_REQUIRE_S3").is_ok_and(|v| v == "1");
        // `moto_server` where pip put it on PATH, else the module through python3.
        let spawn = |program: &str, args: &[&str]| {
            std::process::Command::new(program)
                .args(args)
                .args(["-H", "127.0.0.1", "-p", "0"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
        };
        let spawned = spawn("moto_server", &[]).or_else(|_| {
            let found = std::process::Command::new("python3")
                .args(["-c", "import moto.server"])
                .status()
                .is_ok_and(|s| s.success());
            if found {
                spawn("python3", &["-m", "moto.server"])
            } else {
                Err(std::io::Error::new(std::io::ErrorKind::NotFound, "moto is not installed"))
            }
        });
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) if !required => {
                eprintln!(
                    "skipping the S3 scenario: moto_server not available ({e}); scripts/test-clients.sh installs it"
                );
                return None;
            }
            Err(e) => panic!("TRELLIS_REQUIRE_S3=1 but moto_server does not start: {e}"),
        };
        // The server announces its port on stderr or stdout; both are drained for good so
        // its request log never blocks it.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        for pipe in [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(pipe).lines().map_while(|l| l.ok()) {
                    if let Some(at) = line.find("http://127.0.0.1:") {
                        let _ = tx.send(line[at..].trim().to_owned());
                    }
                }
            });
        }
        let endpoint = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("moto_server did not announce its address");
        });
        Some(Moto { child, endpoint })
    }

    /// A fresh bucket on this server.
    pub async fn bucket(&self) -> S3Settings {
        let bucket = format!("trellis-{}", uuid::Uuid::new_v4().simple());
        let resp =
            reqwest::Client::new().put(format!("{}/{bucket}", self.endpoint)).send().await.expect("create bucket");
        assert!(resp.status().is_success(), "creating the bucket: {}", resp.status());
        S3Settings {
            bucket,
            region: Some("us-east-1".into()),
            endpoint: Some(self.endpoint.clone()),
            prefix: Some("media".into()),
            allow_http: true,
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

pub fn meta(content_type: &str, filename: Option<&str>, declared_length: Option<u64>) -> UploadMeta {
    UploadMeta {
        user_id: "@alice:media.test".into(),
        content_type: content_type.into(),
        filename: filename.map(Into::into),
        declared_length,
        server_name: None,
        media_id: None,
    }
}

/// Deterministic bytes that do not compress or repeat (xorshift64).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `data` cut into chunks whose sizes cycle through `sizes`.
pub fn chunked(data: &[u8], sizes: &[usize]) -> ByteStream {
    let mut chunks = Vec::new();
    let mut rest = data;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at(size.min(rest.len()));
        chunks.push(Ok(Bytes::copy_from_slice(head)));
        rest = tail;
    }
    Box::pin(stream::iter(chunks))
}

pub fn expect_err<T>(result: Result<T>, code: ErrorCode, status: u16) {
    let Err(err) = result else { panic!("expected {code:?}, got success") };
    assert_eq!(err.code(), code, "{err}");
    assert_eq!(err.status(), status, "{err}");
}
