//! The application state: the services a request may call, connected from the settings.

use crate::carts::Carts;
use crate::catalog::CatalogCache;
use crate::config::{Secret, Settings};
use crate::durable::Durable;
use crate::gift_cards::Guesses;
use crate::hot::{HotStore, MemoryStore, RedisStore, Rules};
use crate::idempotency::Idempotency;
use crate::identity::Auth;
use crate::orders::checkout::Checkout;
use crate::orders::payment::Payments;
use crate::promotions::PromotionsCache;
use std::sync::Arc;
use std::time::Duration;

pub struct AppState {
    pub carts: Carts,
    pub durable: Durable,
    pub auth: Auth,
    pub catalog: Arc<CatalogCache>,
    pub promotions: Arc<PromotionsCache>,
    /// Failed gift card code lookups per client.
    pub guesses: Guesses,
    /// Requests per cart and per client address, requests in flight, time limits.
    pub limits: Arc<crate::limits::Limits>,
    pub idempotency: Idempotency,
    pub admin_token: Option<Secret>,
    pub webhook_secret: Option<Secret>,
    pub hold_ms: i64,
    /// How much longer a shopper may extend a hold, once.
    pub hold_extend_ms: i64,
    /// How long a price quote holds.
    pub price_lock_ms: i64,
    /// What price quotes are signed with: derived from CARTSYNC_JWT_SECRET (so every instance
    /// agrees), or random per process without one.
    pub quote_secret: Vec<u8>,
    /// A paid order recovers a cart reported abandoned this recently.
    pub recovery_window_ms: i64,
    /// The abandonment job's settings (its recovery tokens' secret among them).
    pub abandonment: crate::events::abandonment::Settings,
    /// How the webhook worker retries.
    pub webhook_policy: crate::events::webhooks::Policy,
    /// Set when development logins are enabled: the HS256 secret to sign them with.
    pub dev_login_secret: Option<Secret>,
    /// The merge policy when a merge request names none; `None` (`prompt`): it must name one.
    pub merge_policy: Option<shared::MergePolicy>,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    pub fn rules(&self) -> &Rules {
        self.carts.rules()
    }

    /// The request's identity (see [`crate::identity::identify`]), counted against its cart's
    /// allowance once verified: `429` when the cart is over it.
    pub fn identify(&self, headers: &axum::http::HeaderMap) -> Result<crate::identity::Identity, crate::error::ApiError> {
        let identity = crate::identity::identify(headers, &self.auth)?;
        if !identity.issued_token {
            self.limits.cart(identity.cart.tag())?;
        }
        Ok(identity)
    }

    pub fn hot(&self) -> &HotStore {
        self.carts.hot()
    }

    pub fn checkout(&self) -> Checkout<'_> {
        Checkout {
            carts: &self.carts,
            durable: &self.durable,
            catalog: &self.catalog,
            promotions: &self.promotions,
            hold_ms: self.hold_ms,
            recovery_window_ms: self.recovery_window_ms,
            quote_secret: &self.quote_secret,
        }
    }

    pub fn payments(&self) -> Payments<'_> {
        Payments {
            carts: &self.carts,
            durable: &self.durable,
            catalog: &self.catalog,
            promotions: &self.promotions,
            recovery_window_ms: self.recovery_window_ms,
        }
    }
}

/// Connects the stores the settings name. Every failure is one line naming its variable.
pub async fn connect(settings: &Settings) -> Result<AppState, String> {
    let auth = Auth::from_settings(settings)?;
    let hot = match &settings.redis_url {
        Some(url) => {
            let store = tokio::time::timeout(Duration::from_secs(10), RedisStore::connect(url, &settings.redis_prefix))
                .await
                .map_err(|_| "CARTSYNC_REDIS_URL: timed out connecting to Redis".to_owned())?
                .map_err(|e| format!("CARTSYNC_REDIS_URL: cannot use Redis: {e}"))?;
            HotStore::Redis(store.with_claim_idle(settings.write_behind_claim_ms))
        }
        None => HotStore::Memory(Arc::new(MemoryStore::default())),
    };
    let durable =
        tokio::time::timeout(Duration::from_secs(15), Durable::connect_with_pool(&settings.database_url, settings.database_pool_size))
            .await
            .map_err(|_| "CARTSYNC_DATABASE_URL: timed out connecting to the database".to_owned())?
            .map_err(|e| format!("CARTSYNC_DATABASE_URL: {e}"))?;
    let rules = Rules {
        limits: settings.limits(),
        currency: settings.currency,
        guest: settings.guest_expiry(),
        user: settings.user_expiry(),
        merge: settings.merge_policy.default_policy().unwrap_or_default(),
    };
    let catalog = Arc::new(CatalogCache::new(
        Duration::from_secs(settings.price_cache_seconds),
        Duration::from_secs(settings.stock_cache_seconds),
        settings.low_stock_threshold,
    ));
    match catalog.preload(&durable).await {
        Ok(n) => tracing::info!(products = n, "catalog prices loaded"),
        Err(e) => tracing::warn!(error = %e, "could not load the catalog; prices are looked up as carts name them"),
    }
    let promotions = Arc::new(PromotionsCache::new(Duration::from_secs(settings.promotion_cache_seconds), settings.currency));
    if let Err(e) = promotions.reload(&durable).await {
        tracing::warn!(error = %e, "could not load promotions; cart views show none until they load");
    }
    let recovery_window_ms = i64::try_from(settings.recovery_window_days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    let secret = match (&settings.recovery_secret, &settings.jwt_secret) {
        (Some(s), _) if s.expose().len() >= 16 => s.expose().as_bytes().to_vec(),
        (Some(_), _) => return Err("CARTSYNC_RECOVERY_SECRET: at least 16 characters".into()),
        (None, Some(jwt)) => format!("recovery:{}", jwt.expose()).into_bytes(),
        (None, None) => {
            let mut b = vec![0u8; 32];
            getrandom::fill(&mut b).map_err(|e| format!("no randomness for a recovery secret: {e}"))?;
            b
        }
    };
    let quote_secret = match &settings.jwt_secret {
        Some(jwt) => format!("quote:{}", jwt.expose()).into_bytes(),
        None => {
            let mut b = vec![0u8; 32];
            getrandom::fill(&mut b).map_err(|e| format!("no randomness for a quote secret: {e}"))?;
            b
        }
    };
    let ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let abandonment = crate::events::abandonment::Settings {
        after_ms: ms(settings.abandon_after_seconds),
        min_interval_ms: ms(settings.abandon_min_interval_seconds),
        recovery_url: settings.recovery_url.clone(),
        discount_percent: settings.abandon_discount_percent,
        discount_min_total: settings.abandon_discount_min_total,
        discount_days: settings.abandon_discount_days,
        recovery_window_ms,
        secret,
        currency: settings.currency,
    };
    Ok(AppState {
        recovery_window_ms,
        abandonment,
        webhook_policy: crate::events::webhooks::Policy {
            retry_base_ms: settings.webhook_retry_base_ms,
            retry_hours: settings.webhook_retry_hours,
        },
        promotions,
        limits: Arc::new(crate::limits::Limits::new(&settings.limits_config())),
        guesses: Guesses::new(settings.gift_card_guesses, Duration::from_secs(settings.gift_card_guess_seconds)),
        carts: Carts::new(hot, durable.clone(), rules),
        idempotency: Idempotency::new(durable.clone(), Duration::from_millis(settings.idempotency_wait_ms)),
        durable,
        auth,
        catalog,
        admin_token: settings.admin_token.clone(),
        webhook_secret: settings.webhook_secret.clone(),
        merge_policy: settings.merge_policy.default_policy(),
        hold_ms: ms(settings.hold_seconds),
        hold_extend_ms: ms(settings.hold_extend_seconds),
        price_lock_ms: ms(settings.price_lock_seconds),
        quote_secret,
        dev_login_secret: match (settings.dev_login, &settings.jwt_secret) {
            (false, _) => None,
            (true, Some(secret)) => {
                tracing::warn!("development logins are enabled: anyone can get a user token");
                Some(secret.clone())
            }
            (true, None) => return Err("CARTSYNC_DEV_LOGIN: needs CARTSYNC_JWT_SECRET to sign the tokens it hands out".into()),
        },
    })
}
