//! The one error type of the API: a contract error code, a message, optional details.
//! Internal failures are logged with their cause and answered without it.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use shared::wire::{ErrorBody, ErrorEnvelope};
use shared::{CartError, ErrorCode};

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Map<String, Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), details: Map::new() }
    }

    pub fn with_detail(mut self, key: &str, value: Value) -> Self {
        self.details.insert(key.to_owned(), value);
        self
    }

    /// A failure of a store or of the server itself. The cause goes to the log, not the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(ErrorCode::Internal, "something went wrong on our side")
    }

    /// `429 rate_limited`, with `Retry-After` (and `retry_after` in the body) in whole seconds.
    pub fn rate_limited(wait: std::time::Duration, message: impl Into<String>) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError::new(ErrorCode::RateLimited, message).with_detail("retry_after", Value::from(seconds.max(1)))
    }

    /// A store that could not be reached.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "store unavailable");
        ApiError::new(ErrorCode::Unavailable, "the service is temporarily unavailable; try again shortly")
            .with_detail("retry_after", Value::from(1))
    }
}

impl From<CartError> for ApiError {
    fn from(e: CartError) -> Self {
        ApiError::new(e.code, e.message)
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The error as the contract's envelope, `{"error": {"code", "message", ...details}}`.
    pub fn envelope(&self) -> ErrorEnvelope {
        ErrorEnvelope {
            error: ErrorBody { code: self.code.as_str().to_owned(), message: self.message.clone(), details: self.details.clone() },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = matches!(self.code, ErrorCode::RateLimited | ErrorCode::Unavailable)
            .then(|| self.details.get("retry_after").and_then(Value::as_u64))
            .flatten();
        let body = ErrorEnvelope { error: ErrorBody { code: self.code.as_str().to_owned(), message: self.message, details: self.details } };
        let mut res = (status, axum::Json(body)).into_response();
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON request body, parsed into a `Value` with the contract's errors for every way it can be
/// wrong: too large (413), not parseable (400). The body is read as JSON whatever its
/// `Content-Type` says, so a client that forgets the header is not turned away. Field checks come
/// after, in the wire parsers of `shared`.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
            } else if crate::limits::is_body_timeout(&rejection) {
                ApiError::new(ErrorCode::RequestTimeout, "the request body was not sent in time")
            } else {
                ApiError::new(ErrorCode::InvalidJson, format!("could not read the request body: {rejection}"))
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::new(ErrorCode::InvalidJson, "the request body is empty; send a JSON object"));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("the body is not valid JSON: {e}")))
    }
}
