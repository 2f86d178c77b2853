//! The browser binding of cartsync: built out in its own issue. It delegates all cart logic to `shared`.
pub use shared;
