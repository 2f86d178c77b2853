//! The cartsync sync server as a library: `main.rs` is a thin shell around [`app::run`], and tests
//! start the same server on a port of their own with [`app::launch_with_listener`].
//!
//! Modules, lowest first (each uses only modules above it; see ARCHITECTURE.md for the map):
//! `clock`, `config`, `error`, `metrics`, `signature` · `identity`, `limits` · `hot`, `durable` · `catalog`,
//! `promotions`, `gift_cards`, `idempotency` · `carts` · `orders` · `writebehind` · `state` · `routes`, `openapi` · `http` · `app`, `import`.

pub mod app;
pub mod carts;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod durable;
pub mod error;
pub mod events;
pub mod gift_cards;
pub mod hot;
pub mod http;
pub mod idempotency;
pub mod identity;
pub mod import;
pub mod limits;
pub mod metrics;
mod openapi;
pub mod orders;
pub mod promotions;
pub mod queues;
pub mod quotes;
pub mod routes;
pub mod signature;
pub mod state;
pub mod writebehind;

pub use config::Settings;
