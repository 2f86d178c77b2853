//! What one client may take of the service: requests per second per cart and per client address
//! (`429 rate_limited` with `Retry-After`, by `governor`'s keyed limiters), requests in flight at
//! once (`503 unavailable` with `Retry-After` past it, nothing queued), and how long a request may
//! run (`503`) or take to send its body (`408 request_timeout`).
//!
//! The per-cart limit is checked after the request's identity is verified ([`Limits::cart`]), so a
//! forged token can never spend a real shopper's allowance; the per-address limit is checked first,
//! before any work, by the [`guard`] middleware, which also finds the client's address (the peer,
//! or the first `X-Forwarded-For` hop when the peer is a trusted proxy).

use crate::error::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use shared::ErrorCode;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// A proxy whose `X-Forwarded-For` is believed: an address, or a network in CIDR notation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_eq(u128::from(u32::from(net)) << 96, u128::from(u32::from(ip)) << 96, self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_eq(u128::from(net), u128::from(ip), self.prefix),
            _ => false,
        }
    }
}

fn mask_eq(a: u128, b: u128, prefix: u8) -> bool {
    let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
    a & mask == b & mask
}

/// An IPv4 address mapped into IPv6 (a dual-stack listener's peers) as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = addr.parse().map_err(|_| format!("'{s}' is not an address or a network such as 10.0.0.0/8"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("'{s}': the prefix length is 0 to {max}"))?,
        };
        Ok(Network { addr, prefix })
    }
}

/// A comma-separated list of trusted proxies (empty: none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Networks(pub Vec<Network>);

impl std::str::FromStr for Networks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::parse).collect::<Result<_, _>>().map(Networks)
    }
}

/// The client's address as the limits see it, put in the request's extensions by [`guard`].
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

/// The settings of [`Limits`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Requests per second to one cart; bursts of five times as many. 0: no limit.
    pub per_cart: u32,
    /// Requests per second from one client address; bursts of five times as many. 0: no limit.
    pub per_ip: u32,
    pub trusted_proxies: Networks,
    /// Requests being served at once; more are refused at once with `503`.
    pub in_flight: usize,
    /// The longest a request may take, body included.
    pub request_timeout: Duration,
    /// The longest a client may take to send its body.
    pub body_timeout: Duration,
}

pub struct Limits {
    per_cart: Option<DefaultKeyedRateLimiter<String>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    trusted: Networks,
    in_flight: Arc<Semaphore>,
    request_timeout: Duration,
    body_timeout: Duration,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(per_second: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(per_second.saturating_mul(5)).unwrap_or(rate);
    Some(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)))
}

/// `Some(wait)` when `key` is over its allowance.
fn over<K: std::hash::Hash + Eq + Clone>(limiter: &DefaultKeyedRateLimiter<K>, key: &K) -> Option<Duration> {
    limiter.check_key(key).err().map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
}

impl Limits {
    pub fn new(c: &Config) -> Limits {
        Limits {
            per_cart: limiter(c.per_cart),
            per_ip: limiter(c.per_ip),
            trusted: c.trusted_proxies.clone(),
            in_flight: Arc::new(Semaphore::new(c.in_flight.max(1))),
            request_timeout: c.request_timeout,
            body_timeout: c.body_timeout,
        }
    }

    /// Counts one request to the cart named by `tag` (its storage tag: a hash, never the token);
    /// `429` when the cart is over its allowance.
    pub fn cart(&self, tag: String) -> Result<(), ApiError> {
        let Some(limiter) = &self.per_cart else { return Ok(()) };
        match over(limiter, &tag) {
            None => Ok(()),
            Some(wait) => {
                crate::metrics::event("cartsync_rate_limited_total", "cart");
                Err(ApiError::rate_limited(wait, "too many requests to this cart; try again after Retry-After seconds"))
            }
        }
    }

    /// The client's address: the peer's, or the first `X-Forwarded-For` hop when the peer is a
    /// trusted proxy (and the header names a valid address).
    pub fn client_ip(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusted.0.iter().any(|n| n.contains(peer)) {
            return peer;
        }
        headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|first| first.trim().parse::<IpAddr>().ok())
            .map_or(peer, canonical)
    }

    /// Forgets the allowances of clients and carts that have not been seen lately (they are full
    /// again), so the limiters' memory follows the active clients, not every client ever seen.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.per_cart {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Cart and address keys remembered (for the metrics and the tests).
    pub fn remembered(&self) -> (usize, usize) {
        (self.per_cart.as_ref().map_or(0, |l| l.len()), self.per_ip.as_ref().map_or(0, |l| l.len()))
    }
}

/// The middleware in front of every API route: the client's address, its allowance, a place
/// among the requests in flight, and the request's time limits. Health probes (`/healthz`,
/// `/readyz`) are not counted: a load balancer's probes must never be refused for its address.
pub async fn guard(State(limits): State<Arc<Limits>>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let ip = limits.client_ip(peer.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)), req.headers());
    req.extensions_mut().insert(ClientIp(ip));
    if matches!(req.uri().path(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    if let Some(l) = &limits.per_ip
        && let Some(wait) = over(l, &ip)
    {
        crate::metrics::event("cartsync_rate_limited_total", "address");
        return ApiError::rate_limited(wait, "too many requests from this address; try again after Retry-After seconds").into_response();
    }
    let Ok(_permit) = limits.in_flight.clone().try_acquire_owned() else {
        crate::metrics::event("cartsync_overloaded_total", "refused");
        return busy("the server is at its limit of requests in flight; try again shortly").into_response();
    };
    let req = req.map(|body| axum::body::Body::new(tower_http::timeout::TimeoutBody::new(limits.body_timeout, body)));
    match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            crate::metrics::event("cartsync_overloaded_total", "timed_out");
            tracing::warn!(limit_ms = limits.request_timeout.as_millis() as u64, "a request ran past its time limit");
            busy("the request took too long; try again shortly").into_response()
        }
    }
}

/// `503 unavailable` with `Retry-After: 1`.
fn busy(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unavailable, message).with_detail("retry_after", serde_json::Value::from(1))
}

/// Whether a body could not be read because the client was too slow to send it.
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(per_cart: u32, per_ip: u32, trusted: &str) -> Config {
        Config {
            per_cart,
            per_ip,
            trusted_proxies: trusted.parse().expect("networks"),
            in_flight: 8,
            request_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn networks_parse_and_match() {
        let n: Networks = "10.0.0.0/8, 192.168.1.7 ,::1, fd00::/8".parse().expect("valid");
        assert_eq!(n.0.len(), 4);
        let has = |ip: &str| n.0.iter().any(|net| net.contains(ip.parse().expect("an address")));
        assert!(has("10.200.3.4"));
        assert!(has("::ffff:10.1.1.1"), "an IPv4-mapped peer is its IPv4 address");
        assert!(has("192.168.1.7"));
        assert!(!has("192.168.1.8"));
        assert!(has("::1"));
        assert!(has("fd12::1"));
        assert!(!has("11.0.0.1"));
        assert!("".parse::<Networks>().expect("empty").0.is_empty());
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<Networks>().is_err(), "{bad}");
        }
        assert!("0.0.0.0/0".parse::<Network>().expect("all").contains("8.8.8.8".parse().expect("ip")));
    }

    #[test]
    fn the_forwarded_address_is_believed_only_from_a_trusted_proxy() {
        let limits = Limits::new(&config(0, 0, "10.0.0.0/8"));
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.2".parse().expect("a header"));
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(limits.client_ip(ip("10.1.2.3"), &headers), ip("203.0.113.9"));
        assert_eq!(limits.client_ip(ip("198.51.100.1"), &headers), ip("198.51.100.1"), "an untrusted peer's header is ignored");
        headers.insert("x-forwarded-for", "not an address".parse().expect("a header"));
        assert_eq!(limits.client_ip(ip("10.1.2.3"), &headers), ip("10.1.2.3"), "a garbled header falls back to the peer");
    }

    #[test]
    fn a_cart_gets_a_burst_of_five_seconds_then_its_rate() {
        let limits = Limits::new(&config(4, 0, ""));
        let allowed = (0..100).filter(|_| limits.cart("a".into()).is_ok()).count();
        assert!((20..=21).contains(&allowed), "a burst of 5 × 4 (plus at most one refilled), got {allowed}");
        let refused = limits.cart("a".into()).expect_err("over the allowance");
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(refused.details["retry_after"].as_u64().is_some_and(|s| s >= 1));
        assert!(limits.cart("b".into()).is_ok(), "another cart has its own allowance");
        assert!(Limits::new(&config(0, 0, "")).cart("a".into()).is_ok(), "0 is off");
        assert_eq!(limits.remembered(), (2, 0));
    }
}
