//! Gift cards: issued by the admin with a generated code, spent at checkout as tender.
//!
//! The code is a secret: 100 random bits from the operating system (20 symbols of
//! `shared::gift_card::ALPHABET`), shown once when the card is issued and stored only as its
//! SHA-256 (a code has too much entropy to be found from its hash). It is never logged; cards
//! are named by id and last four symbols.
//!
//! `balance` is what is left after paid orders; `held` is what pending orders took (held like
//! stock, ended by `orders::holds::end_holds`). A checkout may take at most `balance − held`,
//! decided under the card's row lock, so concurrent checkouts can never take more than the card
//! holds.
//!
//! Guessing codes is made slow: each client (by address) may fail a code lookup a few times,
//! then is refused (`429` with `Retry-After`) until its allowance comes back ([`Guesses`]).

use crate::durable::{Durable, DurableError, on_db};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::{Currency, Money, Timestamp};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

/// A gift card as stored (never its code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GiftCard {
    pub id: String,
    pub last4: String,
    pub initial: Money,
    pub balance: Money,
    pub held: Money,
    pub expires_at: Option<Timestamp>,
    pub disabled: bool,
    pub created_at: Timestamp,
}

/// Why a card cannot pay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    Unknown,
    Expired,
    Disabled,
    OtherCurrency,
    NoBalance,
}

impl Unusable {
    pub const fn as_str(self) -> &'static str {
        match self {
            Unusable::Unknown => "unknown",
            Unusable::Expired => "expired",
            Unusable::Disabled => "disabled",
            Unusable::OtherCurrency => "currency_mismatch",
            Unusable::NoBalance => "no_balance",
        }
    }
}

impl GiftCard {
    /// What a checkout may still take from it.
    pub fn free(&self) -> i64 {
        (self.balance.amount() - self.held.amount()).max(0)
    }

    /// Why it cannot pay for an order in `currency` at `now`, if it cannot.
    pub fn unusable(&self, currency: Currency, now: Timestamp) -> Option<Unusable> {
        if self.disabled {
            Some(Unusable::Disabled)
        } else if self.expires_at.is_some_and(|e| now > e) {
            Some(Unusable::Expired)
        } else if self.balance.currency() != currency {
            Some(Unusable::OtherCurrency)
        } else if self.free() == 0 {
            Some(Unusable::NoBalance)
        } else {
            None
        }
    }

    /// The admin's view: figures and the last four symbols, never the code.
    pub fn admin_json(&self) -> Value {
        json!({
            "id": self.id, "last4": self.last4, "initial_balance": self.initial, "balance": self.balance, "held": self.held,
            "available": Money::new(self.free(), self.balance.currency()).unwrap_or(self.balance),
            "expires_at": self.expires_at, "disabled": self.disabled, "created_at": self.created_at,
        })
    }
}

/// The stored form of a code: its SHA-256, hex.
pub fn hash_code(canonical: &str) -> String {
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// A new code: 100 random bits from the operating system.
pub fn generate_code() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; shared::gift_card::LENGTH];
    getrandom::fill(&mut bytes)?;
    // 256 is a multiple of 32: every symbol is equally likely.
    Ok(shared::gift_card::from_symbols(&bytes.map(|b| b & 31)))
}

pub(crate) type Row = (String, String, String, i64, i64, i64, Option<i64>, bool, i64);
/// A row of [`COLUMNS`] followed by the code's hash.
pub(crate) type HashedRow = (String, String, String, i64, i64, i64, Option<i64>, bool, i64, String);

/// The card of a [`HashedRow`], and its code's hash.
pub(crate) fn hashed_card_of(row: HashedRow) -> Result<(GiftCard, String), DurableError> {
    let (a, b, c, d, e, f, g, h, i, hash) = row;
    Ok((card_of((a, b, c, d, e, f, g, h, i))?, hash))
}
pub(crate) const COLUMNS: &str = "id, last4, currency, initial, balance, held, expires_at, disabled, created_at";

pub(crate) fn card_of(row: Row) -> Result<GiftCard, DurableError> {
    let (id, last4, currency, initial, balance, held, expires_at, disabled, created_at) = row;
    let bad = |why: String| DurableError::Corrupt(format!("gift card {id}"), why);
    let currency = Currency::parse(&currency).map_err(|e| bad(e.message))?;
    let money = |a: i64| Money::new(a, currency).map_err(|e| bad(e.message));
    Ok(GiftCard {
        last4,
        initial: money(initial)?,
        balance: money(balance)?,
        held: money(held)?,
        expires_at: expires_at.map(Timestamp::from_millis),
        disabled,
        created_at: Timestamp::from_millis(created_at),
        id,
    })
}

/// Issues a card; returns it and its code (the only time the code exists outside the buyer).
pub async fn issue(
    db: &Durable,
    balance: Money,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<(GiftCard, String), DurableError> {
    let code = generate_code().map_err(|e| DurableError::Config(format!("no randomness for a gift card code: {e}")))?;
    let card = GiftCard {
        id: format!("gc_{}", uuid::Uuid::new_v4().simple()),
        last4: shared::gift_card::last4(&code),
        initial: balance,
        balance,
        held: Money::zero(balance.currency()),
        expires_at,
        disabled: false,
        created_at: now,
    };
    on_db!(db, pool => {
        sqlx::query(&format!("INSERT INTO gift_cards ({COLUMNS}, code_hash) VALUES ($1, $2, $3, $4, $4, 0, $5, FALSE, $6, $7)"))
            .bind(&card.id).bind(&card.last4).bind(balance.currency().as_str()).bind(balance.amount())
            .bind(expires_at.map(|t| t.millis())).bind(now.millis()).bind(hash_code(&code))
            .execute(pool).await?;
    });
    Ok((card, code))
}

pub async fn get(db: &Durable, id: &str) -> Result<Option<GiftCard>, DurableError> {
    let sql = format!("SELECT {COLUMNS} FROM gift_cards WHERE id = $1");
    let row: Option<Row> = on_db!(db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?);
    row.map(card_of).transpose()
}

/// The card of a (canonical) code.
pub async fn by_code(db: &Durable, canonical: &str) -> Result<Option<GiftCard>, DurableError> {
    let sql = format!("SELECT {COLUMNS} FROM gift_cards WHERE code_hash = $1");
    let row: Option<Row> = on_db!(db, pool => sqlx::query_as(&sql).bind(hash_code(canonical)).fetch_optional(pool).await?);
    row.map(card_of).transpose()
}

/// Disables a card for good; pending orders keep what they hold. `None`: no such card.
pub async fn disable(db: &Durable, id: &str) -> Result<Option<GiftCard>, DurableError> {
    on_db!(db, pool => {
        sqlx::query("UPDATE gift_cards SET disabled = TRUE WHERE id = $1").bind(id).execute(pool).await?;
    });
    get(db, id).await
}

/// Failed code lookups per client: a few are allowed at once, then one per `every`; a client
/// past its allowance is refused until it comes back, before any lookup is made.
pub struct Guesses {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, std::time::Instant>>,
}

/// Most blocked clients remembered; past it, the ones whose block has ended are forgotten.
const MAX_BLOCKED: usize = 100_000;

impl Guesses {
    pub fn new(burst: u32, every: Duration) -> Guesses {
        let quota = Quota::with_period(every.max(Duration::from_millis(1)))
            .expect("a positive period")
            .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least one"));
        Guesses { limiter: RateLimiter::keyed(quota), blocked: Mutex::default() }
    }

    /// `Some(wait)` when the client must wait before looking a code up again.
    pub fn refused(&self, client: IpAddr) -> Option<Duration> {
        let blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        let until = *blocked.get(&client)?;
        until.checked_duration_since(std::time::Instant::now())
    }

    /// Counts a failed lookup; `Some(wait)` when it used up the client's allowance.
    pub fn failed(&self, client: IpAddr) -> Option<Duration> {
        let clock = DefaultClock::default();
        match self.limiter.check_key(&client) {
            Ok(()) => None,
            Err(not_until) => {
                let wait = not_until.wait_time_from(clock.now()).max(Duration::from_secs(1));
                let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
                if blocked.len() >= MAX_BLOCKED {
                    let now = std::time::Instant::now();
                    blocked.retain(|_, until| *until > now);
                    self.limiter.retain_recent();
                }
                blocked.insert(client, std::time::Instant::now() + wait);
                Some(wait)
            }
        }
    }
}
