//! Who a request speaks for: a verified user (Bearer JWT) or a guest (cart token).

use crate::config::Settings;
use crate::error::ApiError;
use axum::http::HeaderMap;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use shared::{ErrorCode, GuestToken, UserId};

pub const CART_TOKEN_HEADER: &str = "x-cart-token";

/// Verifies user tokens with one configured key and one pinned algorithm.
pub struct Auth {
    key: Option<(DecodingKey, Validation)>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

impl Auth {
    /// Reads the key named by the settings. An unreadable or unparseable key is an error naming
    /// the variable, so the server refuses to start rather than refusing every user later.
    pub fn from_settings(s: &Settings) -> Result<Auth, String> {
        let (key, alg) = match (&s.jwt_public_key, &s.jwt_secret) {
            (Some(path), _) => {
                let pem = std::fs::read(path).map_err(|e| format!("CARTSYNC_JWT_PUBLIC_KEY: cannot read {}: {e}", path.display()))?;
                if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
                    (k, Algorithm::EdDSA)
                } else if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                    (k, Algorithm::RS256)
                } else {
                    return Err(format!("CARTSYNC_JWT_PUBLIC_KEY: {} is not an RSA or Ed25519 public key in PEM", path.display()));
                }
            }
            (None, Some(secret)) => (DecodingKey::from_secret(secret.expose().as_bytes()), Algorithm::HS256),
            (None, None) => return Ok(Auth { key: None }),
        };
        let mut v = Validation::new(alg);
        v.leeway = 5;
        // `nbf` is checked when the token has one; `iss` and `aud`, when configured, must be in
        // the token (a token without them is refused, not waved through).
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &s.jwt_issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        match &s.jwt_audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        Ok(Auth { key: Some((key, v)) })
    }

    pub fn verify(&self, token: &str) -> Result<UserId, ApiError> {
        let unauthorized = |why: &str| ApiError::new(ErrorCode::Unauthorized, why.to_owned());
        let (key, validation) = self.key.as_ref().ok_or_else(|| unauthorized("user tokens are not accepted by this server"))?;
        let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| {
            tracing::debug!(error = %e, "rejected user token");
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => unauthorized("the token has expired"),
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => unauthorized("the token is not valid yet (nbf)"),
                _ => unauthorized("the token is not valid"),
            }
        })?;
        UserId::parse(&data.claims.sub).map_err(ApiError::from)
    }
}

/// Which cart a request addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CartId {
    Guest(GuestToken),
    User(UserId),
}

impl CartId {
    /// A short, fixed-length name for storage keys: a hash, so a guest token (a secret) never
    /// appears in a key and no user id can break a Redis hash tag.
    pub fn tag(&self) -> String {
        let (prefix, raw) = match self {
            CartId::Guest(t) => ("g", t.as_str()),
            CartId::User(u) => ("u", u.as_str()),
        };
        let digest = Sha256::digest(raw.as_bytes());
        format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]))
    }

    pub fn is_user(&self) -> bool {
        matches!(self, CartId::User(_))
    }

    pub fn key(&self) -> CartKey {
        CartKey {
            tag: self.tag(),
            user: match self {
                CartId::User(u) => Some(u.clone()),
                CartId::Guest(_) => None,
            },
        }
    }
}

/// What the stores need to know of a cart: its storage tag, and its user if it has one (user
/// carts are restored from and written behind to the durable store). Unlike [`CartId`] it holds
/// no secret, so it can be kept, for example with an order, to reach the cart later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CartKey {
    pub tag: String,
    pub user: Option<UserId>,
}

impl CartKey {
    pub fn tag(&self) -> String {
        self.tag.clone()
    }

    pub fn is_user(&self) -> bool {
        self.user.is_some()
    }

    pub fn user(&self) -> Option<&UserId> {
        self.user.as_ref()
    }

    pub fn for_user(user: &UserId) -> CartKey {
        CartId::User(user.clone()).key()
    }
}

/// The identity of one request, and whether its guest token was just issued.
pub struct Identity {
    pub cart: CartId,
    pub issued_token: bool,
}

pub fn new_guest_token() -> GuestToken {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    GuestToken::from_random_bytes(&bytes)
}

/// Resolves the identity: a Bearer token must verify (never a silent fallback to the guest cart);
/// otherwise the cart token names the guest cart; otherwise a new guest token is issued.
pub fn identify(headers: &HeaderMap, auth: &Auth) -> Result<Identity, ApiError> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or("");
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "use Authorization: Bearer <token>"))?;
        return Ok(Identity { cart: CartId::User(auth.verify(token.trim())?), issued_token: false });
    }
    guest_identity(headers)
}

pub fn guest_identity(headers: &HeaderMap) -> Result<Identity, ApiError> {
    match headers.get(CART_TOKEN_HEADER) {
        Some(v) => {
            let token = GuestToken::parse(v.to_str().unwrap_or(""))?;
            Ok(Identity { cart: CartId::Guest(token), issued_token: false })
        }
        None => Ok(Identity { cart: CartId::Guest(new_guest_token()), issued_token: true }),
    }
}
