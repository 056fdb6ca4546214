//! Sync long-polls multiplexed on one gRPC stream between a gateway and a worker.
//! [`Multiplexer`] is the gateway's end: it tags each call with an ID, routes the answers
//! back and cancels calls whose client went away. [`serve`] is the worker's end: each call runs
//! as its own task, and once shutdown begins the stream ends after its last answer. A call on
//! the stream costs a message each way instead of an HTTP/2 stream with headers and trailers.

use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use futures_util::{FutureExt, StreamExt};
use parking_lot::Mutex;
use tokio::{
    sync::{mpsc, oneshot},
    task::{AbortHandle, JoinSet},
};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Code, Status, transport::Channel};
use trellis_core::{Error, Result, shutdown::Shutdown};

use crate::pb::sync::{
    CallError, Cancel, SyncAnswer, SyncCall, SyncRequest, SyncResponse, sync_answer, sync_call, sync_client::SyncClient,
};

type Answer = Result<SyncResponse>;

/// The gateway's end: at most one open stream to the worker, opened on first use and again
/// whenever the last one has ended.
#[derive(Default)]
pub struct Multiplexer {
    open: Mutex<Option<Arc<CallStream>>>,
    next_id: AtomicU64,
    /// Set once the worker has answered that it has no `SyncCalls` (an older release).
    unsupported: Arc<AtomicBool>,
}

/// One open stream: where calls go out, and who waits for which answer.
struct CallStream {
    calls: mpsc::UnboundedSender<SyncCall>,
    /// Calls awaiting their answer; `None` once the stream has ended, so nobody waits forever.
    waiting: Mutex<Option<HashMap<u64, oneshot::Sender<Answer>>>>,
}

impl Multiplexer {
    /// Makes one long-poll on the worker behind `client`. Fails as "unavailable" (which the
    /// sync pool retries on another worker) if the stream ends before the answer arrives.
    pub async fn call(&self, client: &SyncClient<Channel>, request: SyncRequest) -> Result<SyncResponse> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let Some(stream) = self.register(client, id, tx) else {
            return Err(unavailable());
        };
        let mut pending = Pending { stream, id, answered: false };
        let call = SyncCall { id, kind: Some(sync_call::Kind::Request(request)), trace: crate::trace::current_map() };
        if pending.stream.calls.send(call).is_err() {
            return Err(unavailable());
        }
        let answer = rx.await;
        pending.answered = true;
        answer.unwrap_or_else(|_| Err(unavailable()))
    }

    /// Whether the worker lacks `SyncCalls`, so that calls must go unary.
    pub fn unsupported(&self) -> bool {
        self.unsupported.load(Ordering::Relaxed)
    }

    /// Registers call `id` on the open stream, opening one if there is none.
    fn register(
        &self,
        client: &SyncClient<Channel>,
        id: u64,
        mut tx: oneshot::Sender<Answer>,
    ) -> Option<Arc<CallStream>> {
        let mut open = self.open.lock();
        if let Some(stream) = open.as_ref() {
            match stream.wait_for(id, tx) {
                Ok(()) => return Some(stream.clone()),
                Err(back) => tx = back,
            }
        }
        let stream = CallStream::open(client.clone(), self.unsupported.clone());
        *open = Some(stream.clone());
        // A stream that failed already has dropped its table: the caller hears "unavailable".
        stream.wait_for(id, tx).ok().map(|()| stream)
    }
}

impl CallStream {
    fn open(client: SyncClient<Channel>, unsupported: Arc<AtomicBool>) -> Arc<CallStream> {
        let (calls, outgoing) = mpsc::unbounded_channel();
        let stream = Arc::new(CallStream { calls, waiting: Mutex::new(Some(HashMap::new())) });
        tokio::spawn(read_answers(client, outgoing, Arc::downgrade(&stream), unsupported));
        stream
    }

    fn wait_for(&self, id: u64, tx: oneshot::Sender<Answer>) -> Result<(), oneshot::Sender<Answer>> {
        match self.waiting.lock().as_mut() {
            Some(waiting) => {
                waiting.insert(id, tx);
                Ok(())
            }
            None => Err(tx),
        }
    }

    /// Takes call `id`'s waiter, if it is still waiting.
    fn take(&self, id: u64) -> Option<oneshot::Sender<Answer>> {
        self.waiting.lock().as_mut().and_then(|w| w.remove(&id))
    }

    /// The stream has ended: every waiting call is answered "unavailable" by its dropped sender.
    fn close(&self) {
        self.waiting.lock().take();
    }
}

/// A call on its way: if its caller gives up first, the worker is told to drop it.
struct Pending {
    stream: Arc<CallStream>,
    id: u64,
    answered: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.answered && self.stream.take(self.id).is_some() {
            let cancel =
                SyncCall { id: self.id, kind: Some(sync_call::Kind::Cancel(Cancel {})), trace: HashMap::new() };
            let _ = self.stream.calls.send(cancel);
        }
    }
}

/// Runs one stream: sends what callers queue, hands each answer to its caller, and closes the
/// stream's table when the worker ends it or goes away. Holds the stream weakly, so that
/// dropping the multiplexer ends the outgoing side and with it the whole exchange.
async fn read_answers(
    mut client: SyncClient<Channel>,
    outgoing: mpsc::UnboundedReceiver<SyncCall>,
    stream: Weak<CallStream>,
    unsupported: Arc<AtomicBool>,
) {
    match client.sync_calls(tonic::Request::new(UnboundedReceiverStream::new(outgoing))).await {
        Ok(response) => {
            let mut answers = response.into_inner();
            loop {
                match answers.message().await {
                    Ok(Some(answer)) => {
                        let Some(stream) = stream.upgrade() else { break };
                        if let Some(tx) = stream.take(answer.id) {
                            let _ = tx.send(outcome(answer));
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::warn!(code = ?status.code(), message = status.message(), "sync call stream failed");
                        break;
                    }
                }
            }
        }
        Err(status) if status.code() == Code::Unimplemented => {
            tracing::info!("sync worker has no call streams; its long-polls go one call each");
            unsupported.store(true, Ordering::Relaxed);
        }
        Err(status) => tracing::warn!(code = ?status.code(), message = status.message(), "sync call stream refused"),
    }
    if let Some(stream) = stream.upgrade() {
        stream.close();
    }
}

/// An answer as the result the unary call would have returned.
fn outcome(answer: SyncAnswer) -> Answer {
    match answer.outcome {
        Some(sync_answer::Outcome::Response(response)) => Ok(response),
        Some(sync_answer::Outcome::Error(e)) => {
            Err(crate::status::to_error(Status::with_details(Code::from(e.code), e.message, e.details.into())))
        }
        None => Err(Error::internal("sync answer without an outcome")),
    }
}

/// "Try another worker": the error an unreachable worker gives a unary call.
fn unavailable() -> Error {
    crate::status::to_error(Status::unavailable(""))
}

/// The answer stream a worker returns for one gateway's calls.
pub type Answers = UnboundedReceiverStream<Result<SyncAnswer, Status>>;

/// The worker's end of one stream: runs each call through `service` (the worker's `sync`)
/// until the gateway closes the stream or, after `shutdown`, until every call has been
/// answered.
pub fn serve<F, Fut>(service: F, calls: tonic::Streaming<SyncCall>, shutdown: Option<Shutdown>) -> Answers
where
    F: Fn(SyncRequest) -> Fut + Send + 'static,
    Fut: Future<Output = Answer> + Send + 'static,
{
    let (answers, rx) = mpsc::unbounded_channel();
    tokio::spawn(run_calls(service, calls, shutdown, answers));
    UnboundedReceiverStream::new(rx)
}

async fn run_calls<F, Fut>(
    service: F,
    mut calls: tonic::Streaming<SyncCall>,
    shutdown: Option<Shutdown>,
    answers: mpsc::UnboundedSender<Result<SyncAnswer, Status>>,
) where
    F: Fn(SyncRequest) -> Fut,
    Fut: Future<Output = Answer> + Send + 'static,
{
    let stop = || async {
        match &shutdown {
            Some(shutdown) => shutdown.wait().await,
            None => std::future::pending().await,
        }
    };
    // Dropping the set (the gateway went away) aborts whatever still runs.
    let mut running = JoinSet::new();
    let mut handles: HashMap<u64, AbortHandle> = HashMap::new();
    let mut stopping = shutdown.as_ref().is_some_and(Shutdown::is_triggered);
    while !(stopping && running.is_empty()) {
        tokio::select! {
            call = calls.next() => match call {
                Some(Ok(SyncCall { id, kind: Some(sync_call::Kind::Request(request)), trace })) => {
                    if stopping {
                        // New calls go to another worker; the gateway retries on "unavailable".
                        let _ = answers.send(Ok(answer(id, Err(Status::unavailable("sync worker is stopping")))));
                        continue;
                    }
                    let handle = running.spawn(run_call(service(request), id, trace, answers.clone()));
                    handles.insert(id, handle);
                }
                Some(Ok(SyncCall { id, kind: Some(sync_call::Kind::Cancel(_)), .. })) => {
                    if let Some(handle) = handles.remove(&id) {
                        handle.abort();
                    }
                }
                // A kind this release does not know (a newer gateway's): say so, or it waits.
                Some(Ok(SyncCall { id, kind: None, .. })) => {
                    let _ = answers.send(Ok(answer(id, Err(Status::unimplemented("unknown sync call")))));
                }
                Some(Err(_)) | None => break,
            },
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok(id) = done {
                    handles.remove(&id);
                }
            }
            () = stop(), if !stopping => stopping = true,
        }
    }
}

/// One call, answered whatever happens to it (a panic included, as an internal error: its
/// caller must not wait on).
async fn run_call(
    sync: impl Future<Output = Answer>,
    id: u64,
    trace: HashMap<String, String>,
    answers: mpsc::UnboundedSender<Result<SyncAnswer, Status>>,
) -> u64 {
    let call = AssertUnwindSafe(sync)
        .catch_unwind()
        .map(|caught| caught.unwrap_or_else(|_| Err(Error::internal("sync call panicked"))).and_then(fits));
    let result = crate::server::respond("sync", "sync", |span| crate::trace::adopt_map(span, &trace), call).await;
    let _ = answers.send(Ok(answer(id, result)));
    id
}

/// An answer too big for a message would end the whole stream (and every call on it) when
/// encoded: it fails alone instead, as it would on a unary call.
fn fits(response: SyncResponse) -> Result<SyncResponse> {
    use prost::Message;
    if response.encoded_len() + 16 > crate::MAX_MESSAGE_BYTES {
        return Err(Error::internal(format!(
            "sync answer of {} bytes is over the message limit",
            response.encoded_len()
        )));
    }
    Ok(response)
}

fn answer(id: u64, result: Result<SyncResponse, Status>) -> SyncAnswer {
    let outcome = match result {
        Ok(response) => sync_answer::Outcome::Response(response),
        Err(status) => sync_answer::Outcome::Error(CallError {
            code: status.code() as i32,
            message: status.message().to_owned(),
            details: status.details().to_vec(),
        }),
    };
    SyncAnswer { id, outcome: Some(outcome) }
}
