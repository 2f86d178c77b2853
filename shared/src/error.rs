use std::fmt;

/// Every error code of the public contract: the server's (in [`ErrorCode::ALL`]) and the
/// browser client's own (in [`ErrorCode::CLIENT`], never sent by the server).
///
/// The string form is stable: clients match on it, and the JavaScript package exposes it as
/// `CartError.code`. The HTTP status lives here too so that no two places can disagree on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidJson,
    InvalidRequest,
    InvalidCartToken,
    Unauthorized,
    Forbidden,
    NotFound,
    LineNotFound,
    MethodNotAllowed,
    VersionMismatch,
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidQuantity,
    InvalidSku,
    InvalidMoney,
    InvalidOp,
    CurrencyMismatch,
    CartFull,
    TooManyOps,
    RateLimited,
    RequestTimeout,
    Internal,
    Unavailable,
    InvalidIdempotencyKey,
    IdempotencyKeyReused,
    RequestInProgress,
    CartEmpty,
    PriceChanged,
    OutOfStock,
    ReservationExpired,
    OrderNotPending,
    StockBelowReserved,
    UnknownProduct,
    CartMerged,
    OpOutOfOrder,
    InvalidSignature,
    AmountMismatch,
    InvalidPromoCode,
    PromoCodeNotFound,
    TooManyPromoCodes,
    PromotionUnavailable,
    GiftCardNotFound,
    GiftCardUnavailable,
    TotalTooLarge,
    MergePolicyRequired,
    QuoteInvalid,
    HoldNotExtendable,
    // The browser client's own codes.
    NetworkError,
    StorageFull,
    StorageCorrupt,
    StorageOutdated,
    StorageNewer,
    NoEndpoint,
}

impl ErrorCode {
    /// The codes the server answers with.
    pub const ALL: [ErrorCode; 46] = [
        ErrorCode::InvalidJson,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidCartToken,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::LineNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::VersionMismatch,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::InvalidQuantity,
        ErrorCode::InvalidSku,
        ErrorCode::InvalidMoney,
        ErrorCode::InvalidOp,
        ErrorCode::CurrencyMismatch,
        ErrorCode::CartFull,
        ErrorCode::TooManyOps,
        ErrorCode::RateLimited,
        ErrorCode::RequestTimeout,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::InvalidIdempotencyKey,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::RequestInProgress,
        ErrorCode::CartEmpty,
        ErrorCode::PriceChanged,
        ErrorCode::OutOfStock,
        ErrorCode::ReservationExpired,
        ErrorCode::OrderNotPending,
        ErrorCode::StockBelowReserved,
        ErrorCode::UnknownProduct,
        ErrorCode::CartMerged,
        ErrorCode::OpOutOfOrder,
        ErrorCode::InvalidSignature,
        ErrorCode::AmountMismatch,
        ErrorCode::InvalidPromoCode,
        ErrorCode::PromoCodeNotFound,
        ErrorCode::TooManyPromoCodes,
        ErrorCode::PromotionUnavailable,
        ErrorCode::GiftCardNotFound,
        ErrorCode::GiftCardUnavailable,
        ErrorCode::TotalTooLarge,
        ErrorCode::MergePolicyRequired,
        ErrorCode::QuoteInvalid,
        ErrorCode::HoldNotExtendable,
    ];

    /// The codes only the browser client reports (in `lastError` or a rejected promise).
    pub const CLIENT: [ErrorCode; 6] = [
        ErrorCode::NetworkError,
        ErrorCode::StorageFull,
        ErrorCode::StorageCorrupt,
        ErrorCode::StorageOutdated,
        ErrorCode::StorageNewer,
        ErrorCode::NoEndpoint,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidCartToken => "invalid_cart_token",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::LineNotFound => "line_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::VersionMismatch => "version_mismatch",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::InvalidQuantity => "invalid_quantity",
            ErrorCode::InvalidSku => "invalid_sku",
            ErrorCode::InvalidMoney => "invalid_money",
            ErrorCode::InvalidOp => "invalid_op",
            ErrorCode::CurrencyMismatch => "currency_mismatch",
            ErrorCode::CartFull => "cart_full",
            ErrorCode::TooManyOps => "too_many_ops",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::InvalidIdempotencyKey => "invalid_idempotency_key",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::RequestInProgress => "request_in_progress",
            ErrorCode::CartEmpty => "cart_empty",
            ErrorCode::PriceChanged => "price_changed",
            ErrorCode::OutOfStock => "out_of_stock",
            ErrorCode::ReservationExpired => "reservation_expired",
            ErrorCode::OrderNotPending => "order_not_pending",
            ErrorCode::StockBelowReserved => "stock_below_reserved",
            ErrorCode::UnknownProduct => "unknown_product",
            ErrorCode::CartMerged => "cart_merged",
            ErrorCode::OpOutOfOrder => "op_out_of_order",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::AmountMismatch => "amount_mismatch",
            ErrorCode::InvalidPromoCode => "invalid_promo_code",
            ErrorCode::PromoCodeNotFound => "promo_code_not_found",
            ErrorCode::TooManyPromoCodes => "too_many_promo_codes",
            ErrorCode::PromotionUnavailable => "promotion_unavailable",
            ErrorCode::GiftCardNotFound => "gift_card_not_found",
            ErrorCode::GiftCardUnavailable => "gift_card_unavailable",
            ErrorCode::TotalTooLarge => "total_too_large",
            ErrorCode::MergePolicyRequired => "merge_policy_required",
            ErrorCode::QuoteInvalid => "quote_invalid",
            ErrorCode::HoldNotExtendable => "hold_not_extendable",
            ErrorCode::NetworkError => "network_error",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::StorageCorrupt => "storage_corrupt",
            ErrorCode::StorageOutdated => "storage_outdated",
            ErrorCode::StorageNewer => "storage_newer",
            ErrorCode::NoEndpoint => "no_endpoint",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorCode> {
        Self::ALL.into_iter().chain(Self::CLIENT).find(|c| c.as_str() == s)
    }

    /// The HTTP status the server answers with; 0 for the client's own codes, which no HTTP
    /// answer carries.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::NetworkError
            | ErrorCode::StorageFull
            | ErrorCode::StorageCorrupt
            | ErrorCode::StorageOutdated
            | ErrorCode::StorageNewer
            | ErrorCode::NoEndpoint => 0,
            ErrorCode::InvalidJson | ErrorCode::InvalidCartToken | ErrorCode::InvalidIdempotencyKey => 400,
            ErrorCode::Unauthorized | ErrorCode::InvalidSignature => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound | ErrorCode::LineNotFound | ErrorCode::UnknownProduct | ErrorCode::GiftCardNotFound => 404,
            ErrorCode::RequestInProgress
            | ErrorCode::PriceChanged
            | ErrorCode::OutOfStock
            | ErrorCode::ReservationExpired
            | ErrorCode::OrderNotPending
            | ErrorCode::StockBelowReserved
            | ErrorCode::CartMerged
            | ErrorCode::OpOutOfOrder
            | ErrorCode::AmountMismatch
            | ErrorCode::PromotionUnavailable
            | ErrorCode::GiftCardUnavailable
            | ErrorCode::MergePolicyRequired
            | ErrorCode::QuoteInvalid
            | ErrorCode::HoldNotExtendable => 409,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::VersionMismatch => 412,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidQuantity
            | ErrorCode::InvalidSku
            | ErrorCode::InvalidMoney
            | ErrorCode::InvalidOp
            | ErrorCode::CurrencyMismatch
            | ErrorCode::CartFull
            | ErrorCode::TooManyOps
            | ErrorCode::IdempotencyKeyReused
            | ErrorCode::CartEmpty
            | ErrorCode::InvalidPromoCode
            | ErrorCode::PromoCodeNotFound
            | ErrorCode::TooManyPromoCodes
            | ErrorCode::TotalTooLarge => 422,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected input or a rejected op: a stable code and a sentence for humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CartError {
    pub code: ErrorCode,
    pub message: String,
}

impl CartError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CartError { code, message: message.into() }
    }
}

impl fmt::Display for CartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code.as_str())?;
        f.write_str(": ")?;
        f.write_str(&self.message)
    }
}

impl std::error::Error for CartError {}
