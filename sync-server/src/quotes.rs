//! Price quotes (the price lock): the cart's live unit prices at one moment, signed by the
//! server, which a checkout within the lock window charges instead of the live ones.
//!
//! A quote is `<base64url payload>.<base64url HMAC-SHA256 of the payload>`: nothing in it can be
//! edited without the server's secret, and it names the cart owner it was made for, so it cannot
//! be used on another cart. Pure: the caller supplies the secret, the clock and the cart.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use shared::{Cart, Currency, Money, Sku, Timestamp};

/// Longest quote accepted: a quote of a full cart of 200 long SKUs is far shorter.
pub const MAX_LEN: usize = 64 * 1024;

/// What a quote holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    /// The storage tag of the cart it was made for.
    pub owner: String,
    pub currency: Currency,
    /// Each cart line as quoted: SKU, quantity and unit price.
    pub lines: Vec<(Sku, u32, Money)>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Why a quote cannot be used (the `reason` of `409 quote_invalid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a quote this server signed, edited, or made for another cart.
    Forged,
    /// Past its lock window.
    Expired,
    /// The cart no longer holds the quoted lines in the quoted quantities.
    CartChanged,
}

impl Refusal {
    pub const fn as_str(self) -> &'static str {
        match self {
            Refusal::Forged => "forged",
            Refusal::Expired => "expired",
            Refusal::CartChanged => "cart_changed",
        }
    }

    pub const fn message(self) -> &'static str {
        match self {
            Refusal::Forged => "this quote was not issued for this cart by this store",
            Refusal::Expired => "this quote's price lock has run out; ask for a new quote",
            Refusal::CartChanged => "the cart changed since this quote; ask for a new quote",
        }
    }
}

fn mac(secret: &[u8], payload: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(b"cartsync-quote-v1.");
    mac.update(payload);
    mac
}

/// The signed token of `quote`.
pub fn sign(secret: &[u8], quote: &Quote) -> String {
    let lines: Vec<Value> = quote.lines.iter().map(|(s, q, p)| json!([s.as_str(), q, p.amount()])).collect();
    let payload = json!({
        "o": quote.owner, "c": quote.currency.as_str(), "l": lines,
        "i": quote.issued_at.millis(), "x": quote.expires_at.millis(),
    })
    .to_string();
    let tag = mac(secret, payload.as_bytes()).finalize().into_bytes();
    format!("{}.{}", URL_SAFE_NO_PAD.encode(payload.as_bytes()), URL_SAFE_NO_PAD.encode(tag))
}

/// Reads a token, checking its signature (in constant time), its owner and its expiry.
pub fn verify(secret: &[u8], token: &str, owner: &str, now: Timestamp) -> Result<Quote, Refusal> {
    if token.len() > MAX_LEN {
        return Err(Refusal::Forged);
    }
    let (payload, tag) = token.split_once('.').ok_or(Refusal::Forged)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Refusal::Forged)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| Refusal::Forged)?;
    mac(secret, &payload).verify_slice(&tag).map_err(|_| Refusal::Forged)?;
    let quote = parse(&payload).ok_or(Refusal::Forged)?;
    if quote.owner != owner {
        return Err(Refusal::Forged);
    }
    if now > quote.expires_at {
        return Err(Refusal::Expired);
    }
    Ok(quote)
}

/// The payload of a token whose signature checked (so it is ours, and well formed unless our
/// own format changed).
fn parse(payload: &[u8]) -> Option<Quote> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let currency = Currency::parse(v["c"].as_str()?).ok()?;
    let lines = v["l"]
        .as_array()?
        .iter()
        .map(|l| {
            let sku = Sku::parse(l[0].as_str()?).ok()?;
            let quantity = u32::try_from(l[1].as_u64()?).ok()?;
            let price = Money::new(l[2].as_i64()?, currency).ok()?;
            Some((sku, quantity, price))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Quote {
        owner: v["o"].as_str()?.to_owned(),
        currency,
        lines,
        issued_at: Timestamp::from_millis(v["i"].as_i64()?),
        expires_at: Timestamp::from_millis(v["x"].as_i64()?),
    })
}

impl Quote {
    /// Whether `cart` still holds every quoted line in the quoted quantity. Lines added since
    /// are allowed: they are priced live, never at a quoted price.
    pub fn check_cart(&self, cart: &Cart) -> Result<(), Refusal> {
        if cart.currency != self.currency {
            return Err(Refusal::CartChanged);
        }
        for (sku, quantity, _) in &self.lines {
            if !cart.lines.iter().any(|l| l.sku == *sku && l.quantity == *quantity) {
                return Err(Refusal::CartChanged);
            }
        }
        Ok(())
    }

    /// The quoted unit price of `sku`, if the quote has one.
    pub fn price_of(&self, sku: &Sku) -> Option<Money> {
        self.lines.iter().find(|(s, _, _)| s == sku).map(|(_, _, p)| *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Limits;

    const SECRET: &[u8] = b"a quote secret of some length";

    fn usd(a: i64) -> Money {
        Money::new(a, Currency::USD).unwrap()
    }

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    fn quote() -> Quote {
        Quote {
            owner: "g:abc".into(),
            currency: Currency::USD,
            lines: vec![(sku("A"), 2, usd(1000)), (sku("B"), 1, usd(250))],
            issued_at: Timestamp::from_millis(1_000),
            expires_at: Timestamp::from_millis(901_000),
        }
    }

    #[test]
    fn a_signed_quote_reads_back_for_its_owner_until_it_expires() {
        let token = sign(SECRET, &quote());
        assert_eq!(verify(SECRET, &token, "g:abc", Timestamp::from_millis(2_000)), Ok(quote()));
        assert_eq!(verify(SECRET, &token, "g:abc", Timestamp::from_millis(901_000)), Ok(quote()), "the last millisecond counts");
        assert_eq!(verify(SECRET, &token, "g:abc", Timestamp::from_millis(901_001)), Err(Refusal::Expired));
        assert_eq!(verify(SECRET, &token, "u:someone", Timestamp::from_millis(2_000)), Err(Refusal::Forged), "another cart's");
        assert_eq!(verify(b"another secret", &token, "g:abc", Timestamp::from_millis(2_000)), Err(Refusal::Forged));
    }

    #[test]
    fn any_edit_of_a_quote_is_forged() {
        let token = sign(SECRET, &quote());
        let (payload, tag) = token.split_once('.').unwrap();
        let mut cheaper = quote();
        cheaper.lines[0].2 = usd(1);
        let cheap_payload = sign(b"guessed", &cheaper).split_once('.').unwrap().0.to_owned();
        let now = Timestamp::from_millis(2_000);
        for bad in [
            format!("{cheap_payload}.{tag}"),
            format!("{payload}.{}", &tag[1..]),
            format!("{payload}x.{tag}"),
            payload.to_owned(),
            String::new(),
            "..".into(),
            "a".repeat(MAX_LEN + 1),
        ] {
            assert_eq!(verify(SECRET, &bad, "g:abc", now), Err(Refusal::Forged), "{bad:.40}");
        }
    }

    #[test]
    fn a_cart_still_holding_the_quoted_lines_passes_and_added_lines_are_allowed() {
        let limits = Limits::default();
        let now = Timestamp::from_millis(1_000);
        let mut cart = Cart::new(Currency::USD);
        let add = |cart: &mut Cart, s: &str, q: i64| {
            let op = shared::OpKind::Add { sku: sku(s), quantity: shared::Quantity::new(q, &limits).unwrap(), price_at_add: None };
            cart.apply(&op, &limits, now).unwrap();
        };
        add(&mut cart, "A", 2);
        add(&mut cart, "B", 1);
        assert_eq!(quote().check_cart(&cart), Ok(()));
        add(&mut cart, "C", 1);
        assert_eq!(quote().check_cart(&cart), Ok(()), "a line added after the quote");
        add(&mut cart, "A", 1);
        assert_eq!(quote().check_cart(&cart), Err(Refusal::CartChanged), "a quoted quantity changed");
    }
}
