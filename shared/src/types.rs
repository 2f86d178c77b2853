//! Parsed values: each can only be built valid, so code that holds one need not check it again.

use crate::error::{CartError, ErrorCode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Configurable limits of one cart (the contract's defaults in [`Limits::default`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest quantity of one line, at least 1.
    pub max_line_quantity: u32,
    /// Most lines in the cart, and separately in the saved list.
    pub max_lines: usize,
}

impl Limits {
    /// No configuration may raise the per-line quantity above this: it keeps sums far from overflow
    /// in every representation the cart passes through (Lua doubles, JavaScript numbers).
    pub const ABSOLUTE_MAX_QUANTITY: u32 = 1_000_000;
    pub const ABSOLUTE_MAX_LINES: usize = 10_000;
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_line_quantity: 99, max_lines: 200 }
    }
}

/// A stock-keeping unit: 1 to 64 characters of `[A-Za-z0-9._:-]`. Shared, not copied, when a
/// cart is cloned (the browser cart clones its view for every snapshot it hands out).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sku(std::sync::Arc<str>);

impl Sku {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Sku, CartError> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(Sku(s.into()))
        } else {
            Err(CartError::new(ErrorCode::InvalidSku, "a SKU is 1 to 64 characters of letters, digits, '.', '_', ':' and '-'"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Sku {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sku {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Sku::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A JSON number that is a whole number within ±2^53 (`3` or `3.0`), else `None`.
fn json_integer(v: &serde_json::Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).map(|f| f as i64))
}

/// A line quantity within the configured per-line limit (always at least 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(u32);

impl Quantity {
    pub fn new(n: i64, limits: &Limits) -> Result<Quantity, CartError> {
        let max = i64::from(limits.max_line_quantity.min(Limits::ABSOLUTE_MAX_QUANTITY));
        if (1..=max).contains(&n) {
            Ok(Quantity(n as u32))
        } else {
            Err(CartError::new(ErrorCode::InvalidQuantity, ["quantity must be a whole number from 1 to ", &crate::text::int(max)].concat()))
        }
    }

    /// Accepts only a JSON integer (`2`, or `2.0`, which JSON Schema counts as an integer too):
    /// `1.5`, `"2"` and `null` are refused like `0` is.
    pub fn from_json(v: &serde_json::Value, limits: &Limits) -> Result<Quantity, CartError> {
        Quantity::new(json_integer(v).unwrap_or(0), limits)
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    pub fn parse(s: &str) -> Result<Currency, CartError> {
        match s.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Currency([a, b, c])),
            _ => Err(CartError::new(ErrorCode::InvalidMoney, "currency must be an ISO 4217 code such as \"USD\"")),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters can be stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount in the currency's minor units. Never a float; never negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawMoney")]
pub struct Money {
    amount: i64,
    currency: Currency,
}

#[derive(Deserialize)]
struct RawMoney {
    amount: i64,
    currency: Currency,
}

impl TryFrom<RawMoney> for Money {
    type Error = CartError;
    fn try_from(r: RawMoney) -> Result<Self, CartError> {
        Money::new(r.amount, r.currency)
    }
}

impl Money {
    /// Caps amounts far above any real price (10^12 minor units), so sums of up to
    /// [`Limits::ABSOLUTE_MAX_QUANTITY`] units of [`Limits::ABSOLUTE_MAX_LINES`] lines stay exact.
    pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

    pub fn new(amount: i64, currency: Currency) -> Result<Money, CartError> {
        if (0..=Self::MAX_AMOUNT).contains(&amount) {
            Ok(Money { amount, currency })
        } else {
            Err(CartError::new(
                ErrorCode::InvalidMoney,
                ["amount must be a whole number of minor units from 0 to ", &crate::text::int(Self::MAX_AMOUNT)].concat(),
            ))
        }
    }

    pub const fn zero(currency: Currency) -> Money {
        Money { amount: 0, currency }
    }

    /// A sum the core computed (a line or a cart total may pass [`Money::MAX_AMOUNT`]).
    pub(crate) const fn unchecked(amount: i64, currency: Currency) -> Money {
        Money { amount, currency }
    }

    /// `{"amount": <integer>, "currency": "<ISO 4217>"}`, as serde writes it.
    pub fn to_json(&self) -> serde_json::Value {
        crate::json::object([("amount", self.amount().into()), ("currency", self.currency().as_str().into())])
    }

    /// Parses `{"amount": <integer>, "currency": "<ISO 4217>"}` with the contract's error codes.
    pub fn from_json(v: &serde_json::Value) -> Result<Money, CartError> {
        let bad = || CartError::new(ErrorCode::InvalidMoney, "money is {\"amount\": <integer minor units>, \"currency\": \"USD\"}");
        let obj = v.as_object().ok_or_else(bad)?;
        let amount = obj.get("amount").and_then(json_integer).ok_or_else(bad)?;
        let currency = obj.get("currency").and_then(serde_json::Value::as_str).ok_or_else(bad)?;
        Money::new(amount, Currency::parse(currency)?)
    }

    pub const fn amount(&self) -> i64 {
        self.amount
    }

    pub const fn currency(&self) -> Currency {
        self.currency
    }

    /// `self × n`, saturating at `i64::MAX` (unreachable within the limits above).
    pub fn times(&self, n: u32) -> Money {
        Money { amount: self.amount.saturating_mul(i64::from(n)), currency: self.currency }
    }

    /// Adds two amounts of the same currency; mixing currencies is an error, never a silent sum.
    pub fn checked_add(&self, other: &Money) -> Result<Money, CartError> {
        if self.currency != other.currency {
            return Err(CartError::new(
                ErrorCode::CurrencyMismatch,
                ["cannot add ", other.currency.as_str(), " to ", self.currency.as_str()].concat(),
            ));
        }
        Ok(Money { amount: self.amount.saturating_add(other.amount), currency: self.currency })
    }
}

/// The secret that names a guest cart: at least 128 random bits, base64url without padding,
/// 22 to 64 characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct GuestToken(String);

impl GuestToken {
    pub fn parse(s: &str) -> Result<GuestToken, CartError> {
        let ok = (22..=64).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if ok {
            Ok(GuestToken(s.to_owned()))
        } else {
            Err(CartError::new(ErrorCode::InvalidCartToken, "a cart token is 22 to 64 characters of base64url without padding"))
        }
    }

    /// Encodes caller-provided random bytes (the core has no randomness of its own).
    pub fn from_random_bytes(bytes: &[u8; 24]) -> GuestToken {
        GuestToken(base64url(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A token is a secret: its debug form shows only a prefix.
impl fmt::Debug for GuestToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GuestToken({}…)", &self.0[..6])
    }
}

/// The `sub` of a verified user token: 1 to 255 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub fn parse(s: &str) -> Result<UserId, CartError> {
        if !s.is_empty() && s.len() <= 255 && !s.chars().any(char::is_control) {
            Ok(UserId(s.to_owned()))
        } else {
            Err(CartError::new(ErrorCode::Unauthorized, "the token's subject is not a valid user id"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_accepts_the_contract_charset_only() {
        assert!(Sku::parse("TEE-RED-M").is_ok());
        assert!(Sku::parse("a.b_c:d-9").is_ok());
        assert!(Sku::parse(&"x".repeat(64)).is_ok());
        for bad in ["", " ", "a b", "ü", "a/b", &"x".repeat(65)] {
            assert_eq!(Sku::parse(bad).unwrap_err().code, ErrorCode::InvalidSku, "{bad:?}");
        }
    }

    #[test]
    fn quantity_rejects_zero_negative_huge_fractional_and_strings() {
        let l = Limits::default();
        assert_eq!(Quantity::new(1, &l).unwrap().get(), 1);
        assert_eq!(Quantity::new(99, &l).unwrap().get(), 99);
        assert_eq!(Quantity::from_json(&serde_json::json!(2.0), &l).unwrap().get(), 2, "2.0 is a whole number");
        for bad in [
            serde_json::json!(0),
            serde_json::json!(-1),
            serde_json::json!(100),
            serde_json::json!(1000),
            serde_json::json!(1.5),
            serde_json::json!("2"),
            serde_json::Value::Null,
        ] {
            assert_eq!(Quantity::from_json(&bad, &l).unwrap_err().code, ErrorCode::InvalidQuantity, "{bad}");
        }
    }

    #[test]
    fn money_refuses_mixed_currencies_and_negative_amounts() {
        let usd = Money::new(100, Currency::USD).unwrap();
        let eur = Money::new(100, Currency::parse("EUR").unwrap()).unwrap();
        assert_eq!(usd.checked_add(&eur).unwrap_err().code, ErrorCode::CurrencyMismatch);
        assert_eq!(usd.checked_add(&usd).unwrap().amount(), 200);
        assert!(Money::new(-1, Currency::USD).is_err());
        assert!(Currency::parse("usd").is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":-5,"currency":"USD"}"#).is_err());
        assert!(Money::from_json(&serde_json::json!({"amount": 1.5, "currency": "USD"})).is_err());
    }

    #[test]
    fn guest_tokens_are_long_base64url() {
        let t = GuestToken::from_random_bytes(&[0xAB; 24]);
        assert_eq!(t.as_str().len(), 32);
        assert!(GuestToken::parse(t.as_str()).is_ok());
        assert!(GuestToken::parse("short").is_err());
        assert!(GuestToken::parse(&"a".repeat(65)).is_err());
        assert!(GuestToken::parse("aaaaaaaaaaaaaaaaaaaaaaaaa=").is_err());
        assert!(!format!("{t:?}").contains(t.as_str()));
    }

    #[test]
    fn base64url_matches_the_rfc_vectors() {
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url(b"fooba"), "Zm9vYmE");
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
    }
}
