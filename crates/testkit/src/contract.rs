//! The contract-test harness of the service crates: a scenario is written once against a
//! service trait and [`contract!`] runs it twice, against the implementation called directly
//! and through its gRPC client and server adapter ([`reach`]), each time on a fresh fixture.
//! Also the assertions the suites share.

use std::{fmt::Debug, future::Future, sync::Arc};

use trellis_core::{Error, ErrorCode, Result};
use trellis_proto::{
    auth::{AuthGrpcClient, AuthGrpcServer, AuthService},
    keys::{KeysGrpcClient, KeysGrpcServer, KeysService},
    media::{MediaGrpcClient, MediaGrpcServer, MediaService},
    rooms::{RoomsGrpcClient, RoomsGrpcServer, RoomsService},
    sync::{SyncGrpcClient, SyncGrpcServer, SyncService},
};

/// How a scenario reaches the service under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The implementation, called through its trait.
    Local,
    /// The implementation behind its gRPC server adapter, called through the gRPC client.
    Grpc,
}

/// A service trait with a gRPC server adapter serving any implementation of it and a gRPC
/// client implementing it.
pub trait OverGrpc: Send + Sync + 'static {
    /// The tonic routes serving `local`.
    fn routes(local: Arc<Self>) -> tonic::service::Routes;
    /// A client of the service at `url`.
    fn client(url: &str) -> Arc<Self>;
}

macro_rules! over_grpc {
    ($($Trait:ident: $Server:ident, $Client:ident;)*) => {
        $(
            impl OverGrpc for dyn $Trait {
                fn routes(local: Arc<Self>) -> tonic::service::Routes {
                    tonic::service::Routes::new($Server::new(local).into_service())
                }

                fn client(url: &str) -> Arc<Self> {
                    Arc::new($Client::connect(url).expect("gRPC client"))
                }
            }
        )*
    };
}

over_grpc! {
    AuthService: AuthGrpcServer, AuthGrpcClient;
    KeysService: KeysGrpcServer, KeysGrpcClient;
    RoomsService: RoomsGrpcServer, RoomsGrpcClient;
    SyncService: SyncGrpcServer, SyncGrpcClient;
    MediaService: MediaGrpcServer, MediaGrpcClient;
}

/// `local` itself, or `local` served on a free loopback port and reached through the client.
pub async fn reach<S: OverGrpc + ?Sized>(via: Via, local: Arc<S>) -> Arc<S> {
    match via {
        Via::Local => local,
        Via::Grpc => S::client(&trellis_proto::server::spawn_on_free_port(S::routes(local)).await),
    }
}

/// The setup of scenarios that build their own fixture: they get the [`Via`] alone.
pub async fn bare(via: Via, _: Option<()>) -> Via {
    via
}

/// Runs `scenario` on `fixture`: what [`contract!`] does unless told to `run` otherwise.
pub async fn call<T, F, Fut>(fixture: T, scenario: F)
where
    F: FnOnce(T) -> Fut,
    Fut: Future<Output = ()>,
{
    scenario(fixture).await
}

/// Asserts `err`'s errcode and HTTP status, and the errcode of its client body: all three
/// must survive the gRPC hop.
#[track_caller]
pub fn assert_err(err: &Error, code: ErrorCode, status: u16) {
    assert_eq!((err.code(), err.status()), (code, status), "unexpected error: {err}");
    assert_eq!(err.client_body()["errcode"], code.as_str(), "body: {}", err.client_body());
}

/// Panics unless `result` failed with `code` and a message containing `why`.
#[track_caller]
pub fn refused<T: Debug>(result: Result<T>, code: ErrorCode, why: &str) {
    let err = result.expect_err("expected a refusal");
    assert_eq!(err.code(), code, "{err:?}");
    assert!(err.matrix().is_some_and(|m| m.message.contains(why)), "refused for another reason than {why:?}: {err:?}");
}

/// Stamps out `local::<scenario>` and `grpc::<scenario>` tests, one of each per scenario.
///
/// ```ignore
/// trellis_testkit::contract! {
///     setup = crate::common::env;          // async fn(Via, Option<T>) -> Fixture
///     run = crate::common::run;            // optional: async fn(Fixture, scenario)
///     basics::a_scenario,                  // async fn(Fixture), called with a fresh one
///     basics::another with some_settings(), // setup gets Some(some_settings())
/// }
/// ```
///
/// Paths are resolved from inside the generated modules: give `setup` and `run` from the
/// crate root (`crate::...`); a scenario is named by itself or as `module::scenario`,
/// relative to where the macro is invoked.
#[macro_export]
macro_rules! contract {
    (
        setup = $setup:path;
        run = $run:path;
        $($first:ident $(:: $second:ident)? $(with $given:expr)?),* $(,)?
    ) => {
        mod local {
            $( $crate::contract!(@test Local, $setup, $run, $first $(:: $second)?, [$($given)?]); )*
        }
        mod grpc {
            $( $crate::contract!(@test Grpc, $setup, $run, $first $(:: $second)?, [$($given)?]); )*
        }
    };
    (setup = $setup:path; $($scenarios:tt)*) => {
        $crate::contract! { setup = $setup; run = $crate::contract::call; $($scenarios)* }
    };
    (@test $via:ident, $setup:path, $run:path, $module:ident :: $name:ident, [$($given:expr)?]) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            let fixture = $setup($crate::contract::Via::$via, $crate::contract!(@given $($given)?)).await;
            $run(fixture, super::$module::$name).await;
        }
    };
    (@test $via:ident, $setup:path, $run:path, $name:ident, [$($given:expr)?]) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            let fixture = $setup($crate::contract::Via::$via, $crate::contract!(@given $($given)?)).await;
            $run(fixture, super::$name).await;
        }
    };
    (@given) => { ::core::option::Option::None };
    (@given $given:expr) => { ::core::option::Option::Some($given) };
}
