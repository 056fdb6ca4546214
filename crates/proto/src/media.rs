//! The media service contract. Unlike the other services its bodies stream: uploads and
//! downloads move in chunks through the trait and over gRPC, so memory stays flat whatever
//! the file size. Written by hand because `service!` covers unary calls only.

use std::{pin::Pin, sync::Arc};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use tracing::Instrument;
use trellis_core::{Error, Result};

pub use crate::pb::media::*;

/// A body in chunks. An `Err` item aborts the transfer: nothing partial is ever stored.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// A file on its way out: what it is, then its bytes.
pub struct Download {
    pub meta: DownloadMeta,
    pub body: ByteStream,
}

/// The media repository.
#[async_trait::async_trait]
pub trait MediaService: Send + Sync + 'static {
    /// Stores a body and returns its `mxc://` URI; `M_TOO_LARGE` past the size limit. With
    /// `meta.media_id` set, fills a URI reserved by [`MediaService::create`] instead.
    async fn upload(&self, meta: UploadMeta, body: ByteStream) -> Result<UploadResponse>;
    /// Reserves an `mxc://` URI for an asynchronous upload.
    async fn create(&self, req: CreateRequest) -> Result<CreateResponse>;
    /// Streams a stored file (or a range of it); `M_NOT_FOUND` if there is none,
    /// `M_NOT_YET_UPLOADED` if its asynchronous upload has not arrived in time.
    async fn download(&self, req: DownloadRequest) -> Result<Download>;
    /// Streams a thumbnail of a stored image.
    async fn thumbnail(&self, req: ThumbnailRequest) -> Result<Download>;
    /// The OpenGraph preview of a URL (`M_UNRECOGNIZED` when previews are off).
    async fn preview_url(&self, req: PreviewUrlRequest) -> Result<PreviewUrlResponse>;
    /// What clients may know of the repository's limits.
    async fn config(&self, req: ConfigRequest) -> Result<ConfigResponse>;
    /// Quarantines (or releases) local media: downloads and thumbnails of it are answered
    /// `M_NOT_FOUND`. `M_NOT_FOUND` for a named media ID this server does not have.
    async fn admin_quarantine(&self, req: AdminQuarantineRequest) -> Result<AdminMediaCount>;
    /// Protects local media from every quarantine (or lifts it); `M_NOT_FOUND` for media
    /// this server does not have.
    async fn admin_protect_media(&self, req: AdminProtectMediaRequest) -> Result<AdminMediaCount>;
    /// Deletes local media, its thumbnails and the blobs nothing else names.
    async fn admin_delete_media(&self, req: AdminDeleteMediaRequest) -> Result<AdminDeletedMedia>;
    /// A page of a user's media (`M_INVALID_PARAM` for a bad page or order).
    async fn admin_list_media(&self, req: AdminListMediaRequest) -> Result<AdminMediaList>;
}

/// Calls a remote media service over gRPC.
#[derive(Clone)]
pub struct MediaGrpcClient {
    inner: media_client::MediaClient<tonic::transport::Channel>,
}

impl MediaGrpcClient {
    pub fn new(channel: tonic::transport::Channel) -> Self {
        let inner = media_client::MediaClient::new(channel)
            .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::MAX_MESSAGE_BYTES);
        Self { inner }
    }

    pub fn connect(url: &str) -> Result<Self> {
        Ok(Self::new(crate::channel(url)?))
    }
}

#[async_trait::async_trait]
impl MediaService for MediaGrpcClient {
    async fn upload(&self, meta: UploadMeta, body: ByteStream) -> Result<UploadResponse> {
        // A failing body must abort the call rather than end the request stream cleanly
        // (which the server would take for a complete upload): the error leaves out of band,
        // the stream never ends, and dropping the call resets the HTTP/2 stream.
        let (err_tx, err_rx) = tokio::sync::oneshot::channel::<Error>();
        let state = UploadState { meta: Some(meta), body, err_tx: Some(err_tx) };
        let outgoing = stream::unfold(state, upload_step);
        let mut client = self.inner.clone();
        tokio::select! {
            res = client.upload(request(outgoing)) => res.map(tonic::Response::into_inner).map_err(crate::status::to_error),
            Ok(e) = err_rx => Err(e),
        }
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse> {
        let mut client = self.inner.clone();
        client.create(request(req)).await.map(tonic::Response::into_inner).map_err(crate::status::to_error)
    }

    async fn download(&self, req: DownloadRequest) -> Result<Download> {
        let mut client = self.inner.clone();
        incoming_download(client.download(request(req)).await).await
    }

    async fn thumbnail(&self, req: ThumbnailRequest) -> Result<Download> {
        let mut client = self.inner.clone();
        incoming_download(client.thumbnail(request(req)).await).await
    }

    async fn preview_url(&self, req: PreviewUrlRequest) -> Result<PreviewUrlResponse> {
        let mut client = self.inner.clone();
        client.preview_url(request(req)).await.map(tonic::Response::into_inner).map_err(crate::status::to_error)
    }

    async fn config(&self, req: ConfigRequest) -> Result<ConfigResponse> {
        let mut client = self.inner.clone();
        client.config(request(req)).await.map(tonic::Response::into_inner).map_err(crate::status::to_error)
    }

    async fn admin_quarantine(&self, req: AdminQuarantineRequest) -> Result<AdminMediaCount> {
        let mut client = self.inner.clone();
        client.admin_quarantine(request(req)).await.map(tonic::Response::into_inner).map_err(crate::status::to_error)
    }

    async fn admin_protect_media(&self, req: AdminProtectMediaRequest) -> Result<AdminMediaCount> {
        let mut client = self.inner.clone();
        client.admin_protect_media(request(req)).await.map(tonic::Response::into_inner).map_err(crate::status::to_error)
    }

    async fn admin_delete_media(&self, req: AdminDeleteMediaRequest) -> Result<AdminDeletedMedia> {
        let mut client = self.inner.clone();
        client.admin_delete_media(request(req)).await.map(tonic::Response::into_inner).map_err(crate::status::to_error)
    }

    async fn admin_list_media(&self, req: AdminListMediaRequest) -> Result<AdminMediaList> {
        let mut client = self.inner.clone();
        client.admin_list_media(request(req)).await.map(tonic::Response::into_inner).map_err(crate::status::to_error)
    }
}

/// A request carrying the caller's trace context.
fn request<T>(msg: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(msg);
    crate::trace::inject(request.metadata_mut());
    request
}

/// A download stream as it arrives: its metadata first, then the bytes.
async fn incoming_download(
    response: Result<tonic::Response<tonic::Streaming<DownloadChunk>>, tonic::Status>,
) -> Result<Download> {
    let mut incoming = response.map_err(crate::status::to_error)?.into_inner();
    let meta = match incoming.message().await.map_err(crate::status::to_error)? {
        Some(DownloadChunk { part: Some(download_chunk::Part::Meta(meta)) }) => meta,
        _ => return Err(Error::internal("media download did not start with its metadata")),
    };
    let body = incoming.map(|chunk| match chunk {
        Ok(DownloadChunk { part: Some(download_chunk::Part::Data(d)) }) => Ok(d),
        Ok(_) => Err(Error::internal("unexpected message in media download")),
        Err(status) => Err(crate::status::to_error(status)),
    });
    Ok(Download { meta, body: Box::pin(body) })
}

struct UploadState {
    meta: Option<UploadMeta>,
    body: ByteStream,
    err_tx: Option<tokio::sync::oneshot::Sender<Error>>,
}

/// One message of an outgoing upload: the metadata, then each chunk; a body error is handed
/// to the caller and the stream then stays open forever so it cannot end cleanly.
async fn upload_step(mut st: UploadState) -> Option<(UploadChunk, UploadState)> {
    if let Some(meta) = st.meta.take() {
        return Some((UploadChunk { part: Some(upload_chunk::Part::Meta(meta)) }, st));
    }
    match st.body.next().await {
        Some(Ok(data)) => Some((UploadChunk { part: Some(upload_chunk::Part::Data(data)) }, st)),
        None => None,
        Some(Err(e)) => {
            if let Some(tx) = st.err_tx.take() {
                let _ = tx.send(e);
            }
            std::future::pending::<()>().await;
            None
        }
    }
}

/// Serves any [`MediaService`] over gRPC.
#[derive(Clone)]
pub struct MediaGrpcServer {
    inner: Arc<dyn MediaService>,
}

impl MediaGrpcServer {
    pub fn new(inner: Arc<dyn MediaService>) -> Self {
        Self { inner }
    }

    pub fn into_service(self) -> media_server::MediaServer<Self> {
        media_server::MediaServer::new(self)
            .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::MAX_MESSAGE_BYTES)
    }
}

type DownloadStream = Pin<Box<dyn Stream<Item = Result<DownloadChunk, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl media_server::Media for MediaGrpcServer {
    async fn upload(
        &self,
        request: tonic::Request<tonic::Streaming<UploadChunk>>,
    ) -> Result<tonic::Response<UploadResponse>, tonic::Status> {
        let span = server_span("upload", &request);
        let mut incoming = request.into_inner();
        let meta = match incoming.message().await? {
            Some(UploadChunk { part: Some(upload_chunk::Part::Meta(meta)) }) => meta,
            _ => return Err(tonic::Status::invalid_argument("upload must start with its metadata")),
        };
        let body = incoming.map(|chunk| match chunk {
            Ok(UploadChunk { part: Some(upload_chunk::Part::Data(d)) }) => Ok(d),
            Ok(_) => Err(Error::internal("unexpected message in media upload")),
            Err(status) => Err(Error::internal(format!("upload stream broke: {status}"))),
        });
        let inner = self.inner.clone();
        let result = async move { inner.upload(meta, Box::pin(body)).await }.instrument(span).await;
        result.map(tonic::Response::new).map_err(crate::status::from_error)
    }

    type DownloadStream = DownloadStream;

    async fn download(
        &self,
        request: tonic::Request<DownloadRequest>,
    ) -> Result<tonic::Response<DownloadStream>, tonic::Status> {
        let span = server_span("download", &request);
        let inner = self.inner.clone();
        let req = request.into_inner();
        outgoing_download(async move { inner.download(req).await }.instrument(span).await)
    }

    type ThumbnailStream = DownloadStream;

    async fn thumbnail(
        &self,
        request: tonic::Request<ThumbnailRequest>,
    ) -> Result<tonic::Response<DownloadStream>, tonic::Status> {
        let span = server_span("thumbnail", &request);
        let inner = self.inner.clone();
        let req = request.into_inner();
        outgoing_download(async move { inner.thumbnail(req).await }.instrument(span).await)
    }

    async fn create(
        &self,
        request: tonic::Request<CreateRequest>,
    ) -> Result<tonic::Response<CreateResponse>, tonic::Status> {
        let span = server_span("create", &request);
        let inner = self.inner.clone();
        let req = request.into_inner();
        unary(async move { inner.create(req).await }.instrument(span).await)
    }

    async fn preview_url(
        &self,
        request: tonic::Request<PreviewUrlRequest>,
    ) -> Result<tonic::Response<PreviewUrlResponse>, tonic::Status> {
        let span = server_span("preview_url", &request);
        let inner = self.inner.clone();
        let req = request.into_inner();
        unary(async move { inner.preview_url(req).await }.instrument(span).await)
    }

    async fn config(
        &self,
        request: tonic::Request<ConfigRequest>,
    ) -> Result<tonic::Response<ConfigResponse>, tonic::Status> {
        let span = server_span("config", &request);
        let inner = self.inner.clone();
        let req = request.into_inner();
        unary(async move { inner.config(req).await }.instrument(span).await)
    }

    async fn admin_quarantine(
        &self,
        request: tonic::Request<AdminQuarantineRequest>,
    ) -> Result<tonic::Response<AdminMediaCount>, tonic::Status> {
        let span = server_span("admin_quarantine", &request);
        let inner = self.inner.clone();
        let req = request.into_inner();
        unary(async move { inner.admin_quarantine(req).await }.instrument(span).await)
    }

    async fn admin_protect_media(
        &self,
        request: tonic::Request<AdminProtectMediaRequest>,
    ) -> Result<tonic::Response<AdminMediaCount>, tonic::Status> {
        let span = server_span("admin_protect_media", &request);
        let inner = self.inner.clone();
        let req = request.into_inner();
        unary(async move { inner.admin_protect_media(req).await }.instrument(span).await)
    }

    async fn admin_delete_media(
        &self,
        request: tonic::Request<AdminDeleteMediaRequest>,
    ) -> Result<tonic::Response<AdminDeletedMedia>, tonic::Status> {
        let span = server_span("admin_delete_media", &request);
        let inner = self.inner.clone();
        let req = request.into_inner();
        unary(async move { inner.admin_delete_media(req).await }.instrument(span).await)
    }

    async fn admin_list_media(
        &self,
        request: tonic::Request<AdminListMediaRequest>,
    ) -> Result<tonic::Response<AdminMediaList>, tonic::Status> {
        let span = server_span("admin_list_media", &request);
        let inner = self.inner.clone();
        let req = request.into_inner();
        unary(async move { inner.admin_list_media(req).await }.instrument(span).await)
    }
}

/// The span of one served call, continuing the caller's trace.
fn server_span<T>(method: &'static str, request: &tonic::Request<T>) -> tracing::Span {
    let span = tracing::info_span!("grpc.server", rpc.service = "media", rpc.method = method, otel.kind = "server");
    crate::trace::adopt(&span, request.metadata());
    span
}

fn unary<T>(result: Result<T>) -> Result<tonic::Response<T>, tonic::Status> {
    result.map(tonic::Response::new).map_err(crate::status::from_error)
}

/// A download on its way out: its metadata first, then the bytes.
fn outgoing_download(result: Result<Download>) -> Result<tonic::Response<DownloadStream>, tonic::Status> {
    let Download { meta, body } = result.map_err(crate::status::from_error)?;
    let first = DownloadChunk { part: Some(download_chunk::Part::Meta(meta)) };
    let rest = body.map(|item| match item {
        Ok(data) => Ok(DownloadChunk { part: Some(download_chunk::Part::Data(data)) }),
        Err(e) => Err(crate::status::from_error(e)),
    });
    let out: DownloadStream = Box::pin(stream::once(async { Ok(first) }).chain(rest));
    Ok(tonic::Response::new(out))
}
