//! The cartsync sync server as a library: `main.rs` is a thin shell around [`app::run`], and tests
//! start the same server on a port of their own with [`app::launch_with_listener`].

pub mod app;
pub mod catalog;
pub mod config;
pub mod durable;
pub mod error;
pub mod hot;
pub mod identity;
pub mod import;
pub mod metrics;
mod openapi;
pub mod orders;
mod routes;
pub mod writebehind;

pub use config::Settings;
