//! PostgreSQL, the source of truth: the connection pool, the one ordered migration history,
//! read models shared by the services that read another service's tables, and throwaway
//! test databases.

pub mod device_lists;
pub mod erasure;
pub mod events;
pub mod filter;
pub mod key_counts;
pub mod lock;
pub mod migrate;
pub mod pool;
pub mod relations;
pub mod testing;
pub mod visibility;

pub use deadpool_postgres::{Pool, Transaction};
pub use pool::{Target, connect};
pub use tokio_postgres::{Row, types::ToSql};
