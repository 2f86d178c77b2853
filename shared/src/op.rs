use crate::error::{CartError, ErrorCode};
use crate::promo::PromoCode;
use crate::types::{Money, Quantity, Sku};
use std::fmt;

/// The client-chosen id of one op (a UUID in practice): 1 to 64 characters of `[A-Za-z0-9._:-]`,
/// and, from a client that numbers its ops, that client's id and the op's number ([`ClientSeq`]).
/// A cart applies each op at most once ([`crate::Applied`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId {
    id: String,
    from: Option<ClientSeq>,
}

/// A client's id (1 to 64 of `[A-Za-z0-9_-]`, chosen once per browser or tab) and its op's
/// number in that client's sequence (1, 2, 3, …).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientSeq {
    pub client: String,
    pub seq: u64,
}

impl ClientSeq {
    pub fn parse(client: &str, seq: u64) -> Result<ClientSeq, CartError> {
        let ok = !client.is_empty() && client.len() <= 64 && client.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'));
        if !ok {
            return Err(CartError::new(ErrorCode::InvalidOp, "client_id must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -"));
        }
        if seq == 0 || seq > 1 << 53 {
            return Err(CartError::new(ErrorCode::InvalidOp, "seq must be a whole number from 1"));
        }
        Ok(ClientSeq { client: client.to_owned(), seq })
    }
}

impl OpId {
    pub fn parse(s: &str) -> Result<OpId, CartError> {
        let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(OpId { id: s.to_owned(), from: None })
        } else {
            Err(CartError::new(ErrorCode::InvalidOp, "op_id must be 1 to 64 characters such as a UUID"))
        }
    }

    /// The same op, numbered in a client's sequence.
    pub fn with_client(self, from: ClientSeq) -> OpId {
        OpId { from: Some(from), ..self }
    }

    /// The id of an op that is recorded nowhere (a REST call's, which carries no id of its own):
    /// it is applied each time it is sent, and never answers `duplicate`.
    pub fn untracked() -> OpId {
        OpId { id: String::new(), from: None }
    }

    pub fn is_tracked(&self) -> bool {
        !self.id.is_empty() || self.from.is_some()
    }

    pub fn as_str(&self) -> &str {
        &self.id
    }

    pub fn client(&self) -> Option<&ClientSeq> {
        self.from.as_ref()
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// What one op does. Every field is already parsed, so applying it can only fail on cart state
/// (a missing line, a full cart), never on malformed input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Adds `quantity` to the line (a delta: adds commute), creating it if absent.
    Add {
        sku: Sku,
        quantity: Quantity,
        price_at_add: Option<Money>,
    },
    SetQuantity {
        sku: Sku,
        quantity: Quantity,
    },
    /// Removing an absent line is not an error.
    Remove {
        sku: Sku,
    },
    SaveForLater {
        sku: Sku,
    },
    MoveToCart {
        sku: Sku,
    },
    RemoveSaved {
        sku: Sku,
    },
    /// Empties the cart; the saved list stays.
    Clear,
    /// Takes up to `quantity` units of a line out of the cart, removing the line when none are
    /// left; an absent line is not an error. The server makes these when an order is paid (one
    /// per order line), so lines added after the checkout stay; clients never send them.
    Deduct {
        sku: Sku,
        quantity: Quantity,
    },
    /// Puts a promo code on the cart (at most five; one already there changes nothing).
    ApplyPromoCode {
        code: PromoCode,
    },
    /// Takes a promo code off; an absent one is not an error.
    RemovePromoCode {
        code: PromoCode,
    },
}

impl OpKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            OpKind::Add { .. } => "add",
            OpKind::SetQuantity { .. } => "set_quantity",
            OpKind::Remove { .. } => "remove",
            OpKind::SaveForLater { .. } => "save_for_later",
            OpKind::MoveToCart { .. } => "move_to_cart",
            OpKind::RemoveSaved { .. } => "remove_saved",
            OpKind::Clear => "clear",
            OpKind::Deduct { .. } => "deduct",
            OpKind::ApplyPromoCode { .. } => "apply_promo_code",
            OpKind::RemovePromoCode { .. } => "remove_promo_code",
        }
    }

    /// The promo code a code op names.
    pub fn code(&self) -> Option<&PromoCode> {
        match self {
            OpKind::ApplyPromoCode { code } | OpKind::RemovePromoCode { code } => Some(code),
            _ => None,
        }
    }

    pub fn sku(&self) -> Option<&Sku> {
        match self {
            OpKind::Add { sku, .. }
            | OpKind::SetQuantity { sku, .. }
            | OpKind::Remove { sku }
            | OpKind::SaveForLater { sku }
            | OpKind::MoveToCart { sku }
            | OpKind::RemoveSaved { sku }
            | OpKind::Deduct { sku, .. } => Some(sku),
            OpKind::Clear | OpKind::ApplyPromoCode { .. } | OpKind::RemovePromoCode { .. } => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub id: OpId,
    pub kind: OpKind,
}
