//! The media service contract, written once against `Arc<dyn MediaService>` and run twice:
//! against the local implementation and through the gRPC client/server pair.

/// Stamps out `local::<name>` and `grpc::<name>` tests for each scenario of the module,
/// which takes a [`support::Kind`].
macro_rules! contract {
    ($($scenario:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    super::$scenario(crate::support::Kind::Local).await;
                }
            )*
        }
        mod grpc {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    super::$scenario(crate::support::Kind::Grpc).await;
                }
            )*
        }
    };
}

mod access;
mod admin;
mod async_upload;
mod basics;
mod preview;
mod ranges;
mod s3;
mod support;
mod thumbnails;
