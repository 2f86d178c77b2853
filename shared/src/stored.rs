//! The stored form of a cart, for every store that keeps one as a document (the server's durable
//! store, the browser's localStorage). It carries a format number so old data can be recognised.

use crate::cart::{Cart, CartLine};
use crate::time::Timestamp;
use crate::types::{Currency, Money, Sku};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLine {
    pub sku: Sku,
    pub quantity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_at_add: Option<Money>,
    pub added_at: Timestamp,
    pub seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCart {
    pub format: u32,
    pub currency: Currency,
    pub version: u64,
    pub next_seq: u64,
    pub updated_at: Timestamp,
    pub accessed_at: Timestamp,
    pub lines: Vec<StoredLine>,
    pub saved: Vec<StoredLine>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promo_codes: Vec<crate::promo::PromoCode>,
}

impl StoredCart {
    pub const FORMAT: u32 = 1;

    /// Rebuilds the cart, restoring its invariants (sorted by seq, one line per SKU, positive
    /// quantities) even if the document was edited by hand.
    pub fn into_cart(self) -> Option<Cart> {
        if self.format != Self::FORMAT {
            return None;
        }
        let lines = |v: Vec<StoredLine>| {
            let mut out: Vec<CartLine> = Vec::with_capacity(v.len());
            for l in v {
                if l.quantity == 0 || out.iter().any(|o| o.sku == l.sku) {
                    continue;
                }
                out.push(CartLine { sku: l.sku, quantity: l.quantity, price_at_add: l.price_at_add, added_at: l.added_at, seq: l.seq });
            }
            crate::sort::sort_by_key(&mut out, |l| l.seq);
            out
        };
        let lines_v = lines(self.lines);
        let saved_v = lines(self.saved);
        let max_seq = lines_v.iter().chain(&saved_v).map(|l| l.seq + 1).max().unwrap_or(0);
        Some(Cart {
            currency: self.currency,
            version: self.version,
            lines: lines_v,
            saved: saved_v,
            next_seq: self.next_seq.max(max_seq),
            updated_at: self.updated_at,
            accessed_at: self.accessed_at,
            merged_into: None,
            promo_codes: self.promo_codes,
        })
    }
}

impl StoredCart {
    /// This cart's JSON exactly as serde writes it, written by hand: the browser module carries
    /// no serializer for it.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use crate::wire::fast_json::{list, string, uint};
        out.extend_from_slice(b"{\"format\":");
        uint(out, u64::from(self.format));
        out.extend_from_slice(b",\"currency\":");
        string(out, self.currency.as_str());
        out.extend_from_slice(b",\"version\":");
        uint(out, self.version);
        out.extend_from_slice(b",\"next_seq\":");
        uint(out, self.next_seq);
        out.extend_from_slice(b",\"updated_at\":\"");
        self.updated_at.write_rfc3339(out);
        out.extend_from_slice(b"\",\"accessed_at\":\"");
        self.accessed_at.write_rfc3339(out);
        out.extend_from_slice(b"\",\"lines\":");
        list(out, &self.lines, StoredLine::write_json);
        out.extend_from_slice(b",\"saved\":");
        list(out, &self.saved, StoredLine::write_json);
        if !self.promo_codes.is_empty() {
            out.extend_from_slice(b",\"promo_codes\":");
            list(out, &self.promo_codes, |out, c| string(out, c.as_str()));
        }
        out.push(b'}');
    }
}

impl StoredLine {
    fn write_json(out: &mut Vec<u8>, l: &StoredLine) {
        use crate::wire::fast_json::{line_head, uint};
        line_head(out, &l.sku, l.quantity, l.price_at_add.as_ref(), l.added_at);
        out.extend_from_slice(b",\"seq\":");
        uint(out, l.seq);
        out.push(b'}');
    }
}

impl From<&Cart> for StoredCart {
    fn from(c: &Cart) -> Self {
        let lines = |v: &[CartLine]| {
            v.iter()
                .map(|l| StoredLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    price_at_add: l.price_at_add,
                    added_at: l.added_at,
                    seq: l.seq,
                })
                .collect()
        };
        StoredCart {
            format: Self::FORMAT,
            currency: c.currency,
            version: c.version,
            next_seq: c.next_seq,
            updated_at: c.updated_at,
            accessed_at: c.accessed_at,
            lines: lines(&c.lines),
            saved: lines(&c.saved),
            promo_codes: c.promo_codes.clone(),
        }
    }
}

impl StoredCart {
    /// Reads the stored form from a parsed `Value` (the WebAssembly client's path; see
    /// `wire::read`). `None` if anything is missing or malformed.
    pub fn from_json(v: &serde_json::Value) -> Option<StoredCart> {
        let int = |k: &str| v.get(k)?.as_u64();
        let ts = |l: &serde_json::Value, k: &str| Timestamp::parse_rfc3339(l.get(k)?.as_str()?);
        let lines = |k: &str| -> Option<Vec<StoredLine>> {
            let list = v.get(k)?.as_array()?;
            // A loop, not `collect` into an `Option` (whose adapter the browser module would carry).
            let mut out = Vec::with_capacity(list.len());
            for l in list {
                out.push(StoredLine {
                    sku: Sku::parse(l.get("sku")?.as_str()?).ok()?,
                    quantity: u32::try_from(l.get("quantity")?.as_u64()?).ok()?,
                    price_at_add: match l.get("price_at_add") {
                        None | Some(serde_json::Value::Null) => None,
                        Some(m) => Some(Money::from_json(m).ok()?),
                    },
                    added_at: ts(l, "added_at")?,
                    seq: l.get("seq")?.as_u64()?,
                });
            }
            Some(out)
        };
        Some(StoredCart {
            format: u32::try_from(int("format")?).ok()?,
            currency: Currency::parse(v.get("currency")?.as_str()?).ok()?,
            version: int("version")?,
            next_seq: int("next_seq")?,
            updated_at: ts(v, "updated_at")?,
            accessed_at: ts(v, "accessed_at")?,
            lines: lines("lines")?,
            saved: lines("saved")?,
            promo_codes: match v.get("promo_codes") {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(codes) => {
                    let mut out = Vec::new();
                    for c in codes.as_array()? {
                        out.push(crate::promo::PromoCode::parse(c.as_str()?).ok()?);
                    }
                    out
                }
            },
        })
    }
}
