//! `service!`: from one list of unary methods, the service trait, its gRPC client (which
//! implements the trait) and its gRPC server adapter (which serves any implementation).
//! Adding an RPC to a `.proto` file and one line to the list is all a new method needs.
//!
//! A method written `fn name(Req) -> Resp => via helper;` is still served as a unary RPC, but
//! the client calls its own `helper` instead (sync's long-polls share one stream). `with
//! field: Type` gives the client or server adapter one more field, starting at its default,
//! and a braced block after the server line adds items to the tonic service impl. An optional
//! `pool Pool;` line implements the trait for a pool of workers too (`crate::sync_pool`):
//! each call goes to the worker its request's `user_id` is placed on.
//!
//! Methods whose bodies stream (media's uploads and downloads) are written out by hand beside
//! the generated ones: their signatures in a `streaming { ... }` block at the end of the
//! trait, their client bodies in a braced block after the client line, their server bodies in
//! the server's block (each through [`crate::server::unary`], as the generated ones).

macro_rules! service {
    (
        $(#[$meta:meta])*
        pub trait $Trait:ident as $name:literal {
            $( $(#[$mmeta:meta])* fn $method:ident($Req:ty) -> $Resp:ty $(=> via $via:ident)?; )*
            $(streaming { $($streaming:tt)* })?
        }
        client $Client:ident = $pb_client:ty $(, with $cfield:ident: $CTy:ty)? $({ $($cextra:tt)* })?;
        server $Server:ident = $srv_mod:ident::{$SrvType:ident, $SrvTrait:ident} $(, with $sfield:ident: $STy:ty)?
            $({ $($extra:tt)* })?;
        $(pool $Pool:ident;)?
    ) => {
        $(#[$meta])*
        #[async_trait::async_trait]
        pub trait $Trait: Send + Sync + 'static {
            $( $(#[$mmeta])* async fn $method(&self, req: $Req) -> trellis_core::Result<$Resp>; )*
            $($($streaming)*)?
        }

        #[doc = concat!("Calls a remote `", $name, "` service over gRPC.")]
        #[derive(Clone)]
        pub struct $Client {
            inner: $pb_client,
            $($cfield: $CTy,)?
        }

        impl $Client {
            pub fn new(channel: tonic::transport::Channel) -> Self {
                let inner = <$pb_client>::new(channel)
                    .max_decoding_message_size($crate::MAX_MESSAGE_BYTES)
                    .max_encoding_message_size($crate::MAX_MESSAGE_BYTES);
                Self { inner, $($cfield: Default::default(),)? }
            }

            /// A client for the service at `url`, connecting on first use.
            pub fn connect(url: &str) -> trellis_core::Result<Self> {
                Ok(Self::new($crate::channel(url)?))
            }
        }

        #[async_trait::async_trait]
        impl $Trait for $Client {
            $(
                async fn $method(&self, req: $Req) -> trellis_core::Result<$Resp> {
                    client_call!(self, $method, req $(, $via)?)
                }
            )*
            $($($cextra)*)?
        }

        #[doc = concat!("Serves any `", stringify!($Trait), "` implementation over gRPC.")]
        #[derive(Clone)]
        pub struct $Server {
            inner: std::sync::Arc<dyn $Trait>,
            $($sfield: $STy,)?
        }

        impl $Server {
            pub fn new(inner: std::sync::Arc<dyn $Trait>) -> Self {
                Self { inner, $($sfield: Default::default(),)? }
            }

            /// The tonic service to add to a `Server` router.
            pub fn into_service(self) -> $srv_mod::$SrvType<Self> {
                $srv_mod::$SrvType::new(self)
                    .max_decoding_message_size($crate::MAX_MESSAGE_BYTES)
                    .max_encoding_message_size($crate::MAX_MESSAGE_BYTES)
            }
        }

        #[tonic::async_trait]
        impl $srv_mod::$SrvTrait for $Server {
            $(
                async fn $method(
                    &self,
                    request: tonic::Request<$Req>,
                ) -> Result<tonic::Response<$Resp>, tonic::Status> {
                    $crate::server::unary($name, stringify!($method), request, |req| self.inner.$method(req)).await
                }
            )*
            $($($extra)*)?
        }

        service_pool!([$($Pool)?] $Trait; $($method($Req) -> $Resp;)*);
    };
}

/// The trait for a pool of workers, when the service names one: every call goes to the
/// worker chosen for its request's `user_id` (a user's calls share a worker's warm caches).
macro_rules! service_pool {
    ([] $($rest:tt)*) => {};
    ([$Pool:ident] $Trait:ident; $($method:ident($Req:ty) -> $Resp:ty;)*) => {
        #[async_trait::async_trait]
        impl $Trait for $Pool {
            $(
                async fn $method(&self, req: $Req) -> trellis_core::Result<$Resp> {
                    let user = req.user_id.clone();
                    self.call(&user, |worker: std::sync::Arc<dyn $Trait>| {
                        let req = req.clone();
                        async move { worker.$method(req).await }
                    })
                    .await
                }
            )*
        }
    };
}

/// A generated client's body for one method: a unary gRPC call, or the client's own `via`.
macro_rules! client_call {
    ($client:ident, $method:ident, $req:ident) => {{
        let mut request = tonic::Request::new($req);
        $crate::trace::inject(request.metadata_mut());
        let mut client = $client.inner.clone();
        client.$method(request).await.map(tonic::Response::into_inner).map_err($crate::status::to_error)
    }};
    ($client:ident, $method:ident, $req:ident, $via:ident) => {
        $client.$via($req).await
    };
}
