//! The pure heart of cartsync.
//!
//! Everything a cart *is* and everything that can *happen* to a cart lives here, and nothing else:
//! no clock, no storage, no network, no randomness.
//! The browser client and the sync server both compile this crate, so the optimistic result the
//! client shows and the result the server stores are computed by the same code.
//! Callers pass in the current time and the configured [`Limits`]; functions here cannot fail
//! except with a [`CartError`] that describes bad input.

mod applied;
mod cart;
mod checkout;
mod error;
pub mod events;
pub mod gift_card;
pub mod json;
mod merge;
mod op;
pub mod promo;
pub mod promo_json;
pub mod sort;
pub mod stored;
pub mod text;
mod time;
mod types;
pub mod wire;

pub use applied::{Applied, MAX_CLIENTS, Mark, OutOfOrder, RECENT_OPS};
pub use cart::{Cart, CartLine, CartState, Expiry, OpOutcome};
pub use checkout::{
    CheckoutDecision, Offer, PriceChange, PricedCart, PricedLine, Shortage, UnavailableCode, decide_checkout, parse_idempotency_key,
    price_cart,
};
pub use error::{CartError, ErrorCode};
pub use merge::{MergePolicy, merge, merge_codes, merge_ranked};
pub use op::{ClientSeq, Op, OpId, OpKind};
pub use time::Timestamp;
pub use types::{Currency, GuestToken, Limits, Money, Quantity, Sku, UserId};
