//! Signed webhooks: `Cartsync-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.
//!
//! The time is signed with the body, so a captured request is only good for [`TOLERANCE_SECS`],
//! and the body itself names what it is about (the payment webhook's `order_id` and `amount`), so
//! it cannot be sent about anything else. Several `v1` entries may be given (a secret being
//! rotated); one match is enough.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const HEADER: &str = "cartsync-signature";

/// How far the signed time may be from the receiver's clock, either way.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Cartsync-Signature header is missing")]
    Missing,
    #[error("the Cartsync-Signature header is not t=<unix seconds>,v1=<hex>")]
    Malformed,
    #[error("the signature's time is more than 300 seconds from ours")]
    Stale,
    #[error("the signature does not match the body")]
    Mismatch,
}

fn mac(secret: &[u8], t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value that signs `body` at `t` (unix seconds).
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret, t, body).finalize().into_bytes()))
}

/// Checks a header value against the raw body at `now` (unix seconds). The comparison takes the
/// same time whatever the guess.
pub fn verify(secret: &[u8], header: Option<&str>, body: &[u8], now: i64) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => signatures.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(t) > TOLERANCE_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, t, body);
    if signatures.iter().any(|s| expected.clone().verify_slice(s).is_ok()) { Ok(()) } else { Err(SignatureError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_signature_checks_only_for_its_body_its_secret_and_its_moment() {
        let body = br#"{"order_id":"ord_1"}"#;
        let header = sign(b"secret", NOW, body);
        assert_eq!(verify(b"secret", Some(&header), body, NOW), Ok(()));
        assert_eq!(verify(b"secret", Some(&header), body, NOW + 300), Ok(()));
        assert_eq!(verify(b"secret", Some(&header), body, NOW - 300), Ok(()));
        assert_eq!(verify(b"secret", Some(&header), body, NOW + 301), Err(SignatureError::Stale));
        assert_eq!(verify(b"secret", Some(&header), br#"{"order_id":"ord_2"}"#, NOW), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"other", Some(&header), body, NOW), Err(SignatureError::Mismatch));
        // The same signature moved to another time no longer matches.
        let moved = header.replace(&format!("t={NOW}"), &format!("t={}", NOW + 1));
        assert_eq!(verify(b"secret", Some(&moved), body, NOW), Err(SignatureError::Mismatch));
    }

    #[test]
    fn malformed_headers_are_refused_and_a_rotated_secret_may_sign_beside_the_old() {
        let body = b"{}";
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz", "garbage"] {
            assert_eq!(verify(b"s", Some(bad), body, 1), Err(SignatureError::Malformed), "{bad:?}");
        }
        assert_eq!(verify(b"s", None, body, 1), Err(SignatureError::Missing));
        let old = sign(b"old", NOW, body);
        let new = sign(b"new", NOW, body);
        let both = format!("{old},{}", new.split(',').nth(1).unwrap());
        assert_eq!(verify(b"new", Some(&both), body, NOW), Ok(()));
        assert_eq!(verify(b"old", Some(&both), body, NOW), Ok(()));
    }
}
