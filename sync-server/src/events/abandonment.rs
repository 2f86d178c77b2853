//! Abandonment recovery: finds user carts with lines that have been idle past the threshold and
//! records one `cart.abandoned` per idle period, with a snapshot of the cart at live prices, a
//! signed recovery link, and for a high-value cart a single-use promo code made for it.
//!
//! Exactly once with any number of instances: a candidate is taken with its durable cart row
//! locked (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one writer), the conditions are
//! checked again under that lock, and the event, the `abandonments` row (the idle period it was
//! for) and the promotion are written in one transaction. Not for suppressed users, users who
//! turned abandonment emails off, or users who placed an order since the cart's last activity.
//!
//! `cart.recovered` is recorded by the payment that pays an order of a user whose cart was
//! reported abandoned within the recovery window (`orders::outbox::recovered_events`).

use super::{Event, record};
use crate::catalog::{PRODUCT_COLUMNS, ProductRow, product_of_row};
use crate::durable::{Durable, DurableError, on_db, placeholders};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use shared::events::EventType;
use shared::promo::{Context, LineInput, PromoCode, Promotion, PromotionId, Usage, evaluate};
use shared::stored::StoredCart;
use shared::{Currency, Money, Timestamp};

/// The job's settings (`CARTSYNC_ABANDON_*`, `CARTSYNC_RECOVERY_URL`).
#[derive(Clone, Debug)]
pub struct Settings {
    pub after_ms: i64,
    pub min_interval_ms: i64,
    pub recovery_url: Option<String>,
    pub discount_percent: Option<u32>,
    pub discount_min_total: i64,
    pub discount_days: u64,
    pub recovery_window_ms: i64,
    /// Signs recovery tokens.
    pub secret: Vec<u8>,
    pub currency: Currency,
}

/// Candidates looked at per run.
const PER_RUN: i64 = 200;

/// A recovery token: the user, when it stops working, and an HMAC of both.
pub fn recovery_token(secret: &[u8], user: &str, expires: Timestamp) -> String {
    use base64::Engine;
    let payload = format!("{}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(user), expires.millis() / 1000);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(payload.as_bytes());
    format!("{payload}.{}", hex::encode(&mac.finalize().into_bytes()[..16]))
}

/// The user a recovery token names, if it is genuine and has not expired at `now`.
pub fn verify_recovery_token(secret: &[u8], token: &str, now: Timestamp) -> Option<String> {
    use base64::Engine;
    let (payload, sig) = token.rsplit_once('.')?;
    let (user, exp) = payload.split_once('.')?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(payload.as_bytes());
    let expected = hex::encode(&mac.finalize().into_bytes()[..16]);
    if !subtle_eq(expected.as_bytes(), sig.as_bytes()) {
        return None;
    }
    if exp.parse::<i64>().ok()?.saturating_mul(1000) < now.millis() {
        return None;
    }
    String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(user).ok()?).ok()
}

fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs the job once at `now`; returns how many carts were reported abandoned.
pub async fn run_once(db: &Durable, s: &Settings, now: Timestamp) -> Result<usize, DurableError> {
    let cutoff = now.millis() - s.after_ms;
    let candidates: Vec<(String,)> = on_db!(db, pool => sqlx::query_as(
        "SELECT uc.user_id FROM user_carts uc
         WHERE uc.line_count > 0 AND uc.last_activity > 0 AND uc.last_activity < $1
           AND NOT EXISTS (SELECT 1 FROM abandonments a WHERE a.user_id = uc.user_id AND (a.activity_at >= uc.last_activity OR a.abandoned_at > $2))
           AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.user_id = uc.user_id)
           AND NOT EXISTS (SELECT 1 FROM preferences p WHERE p.user_id = uc.user_id AND NOT p.abandonment_emails)
           AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = uc.user_id AND o.created_at >= uc.last_activity)
         ORDER BY uc.last_activity LIMIT $3")
        .bind(cutoff).bind(now.millis() - s.min_interval_ms).bind(PER_RUN).fetch_all(pool).await?);
    let mut reported = 0;
    for (user,) in candidates {
        if take_one(db, s, &user, now).await? {
            reported += 1;
        }
    }
    if reported > 0 {
        super::webhooks::wake();
        crate::metrics::count("cartsync_carts_abandoned_total", reported as u64);
    }
    Ok(reported)
}

/// Reports one user's cart, if it still qualifies once its row is locked.
async fn take_one(db: &Durable, s: &Settings, user: &str, now: Timestamp) -> Result<bool, DurableError> {
    let skip = match db {
        Durable::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        Durable::Sqlite(_) => "",
    };
    let cutoff = now.millis() - s.after_ms;
    on_db!(db, pool => {
        let mut tx = pool.begin().await?;
        let row: Option<(String, i64, i64)> = sqlx::query_as(&format!("SELECT cart, last_activity, line_count FROM user_carts WHERE user_id = $1{skip}"))
            .bind(user).fetch_optional(&mut *tx).await?;
        let Some((doc, last_activity, line_count)) = row else { return Ok(false) };
        if line_count == 0 || last_activity >= cutoff {
            return Ok(false);
        }
        let blocked: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM abandonments a WHERE a.user_id = $1 AND (a.activity_at >= $2 OR a.abandoned_at > $3)
             UNION ALL SELECT 1 FROM suppressions WHERE user_id = $1
             UNION ALL SELECT 1 FROM preferences WHERE user_id = $1 AND NOT abandonment_emails
             UNION ALL SELECT 1 FROM orders WHERE user_id = $1 AND created_at >= $2")
            .bind(user).bind(last_activity).bind(now.millis() - s.min_interval_ms).fetch_optional(&mut *tx).await?;
        if blocked.is_some() {
            return Ok(false);
        }
        let stored: StoredCart = serde_json::from_str(&doc).map_err(|e| DurableError::Corrupt(user.to_owned(), e.to_string()))?;
        // Live prices and names.
        let skus: Vec<&str> = stored.lines.iter().map(|l| l.sku.as_str()).collect();
        let products: Vec<ProductRow> = if skus.is_empty() {
            Vec::new()
        } else {
            let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE sku IN ({})", placeholders(1, skus.len()));
            let mut q = sqlx::query_as(&sql);
            for sku in &skus {
                q = q.bind(*sku);
            }
            q.fetch_all(&mut *tx).await?
        };
        let products: Vec<crate::catalog::Product> = products.into_iter().filter_map(|r| product_of_row(r).ok()).collect();
        // The promotions of its codes and the automatic ones, as a cart view would take them.
        let codes: Vec<&str> = stored.promo_codes.iter().map(|c| c.as_str()).collect();
        let sql = if codes.is_empty() {
            "SELECT id, definition FROM promotions WHERE code IS NULL AND active".to_owned()
        } else {
            format!("SELECT id, definition FROM promotions WHERE (code IS NULL AND active) OR code IN ({})", placeholders(1, codes.len()))
        };
        let mut q = sqlx::query_as(&sql);
        for c in &codes {
            q = q.bind(*c);
        }
        let defs: Vec<(String, String)> = q.fetch_all(&mut *tx).await?;
        let promotions: Vec<Promotion> = defs
            .iter()
            .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok().and_then(|v| shared::promo_json::promotion_from_json(&v, s.currency).ok()))
            .collect();
        let snapshot = snapshot(&stored, &products, &promotions, now, s.currency);
        let mut data = json!({
            "user": user,
            "owner": "user",
            "cart_version": stored.version,
            "last_activity_at": Timestamp::from_millis(last_activity),
            "lines": snapshot.lines,
            "subtotal": snapshot.subtotal,
            "discount_total": snapshot.discount_total,
            "total": snapshot.total,
            "promo_codes": stored.promo_codes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        });
        if let Some(template) = &s.recovery_url {
            let token = recovery_token(&s.secret, user, Timestamp::from_millis(now.millis() + s.recovery_window_ms));
            data["recovery_url"] = json!(template.replace("{token}", &token));
        }
        // A high-value cart gets a code of its own: one use, this user, for a few days.
        if let Some(percent) = s.discount_percent
            && snapshot.total.amount() >= s.discount_min_total
        {
            let (id, code) = discount_ids();
            let ends = Timestamp::from_millis(now.millis() + i64::try_from(s.discount_days).unwrap_or(7).saturating_mul(86_400_000));
            let promotion = Promotion {
                id: PromotionId::parse(&id).map_err(|e| DurableError::Config(e.message))?,
                code: Some(PromoCode::parse(&code).map_err(|e| DurableError::Config(e.message))?),
                description: format!("{percent}% off, to finish your order"),
                active: true,
                starts_at: None,
                ends_at: Some(ends),
                min_subtotal: None,
                action: shared::promo::Action::PercentOffOrder { percent },
                max_discount: None,
                combinable: false,
                usage_limit: Some(1),
                usage_limit_per_customer: Some(1),
            };
            let definition = shared::promo_json::promotion_json(&promotion).to_string();
            sqlx::query("INSERT INTO promotions (id, code, definition, active, redeemed, pending, created_at, updated_at) VALUES ($1, $2, $3, TRUE, 0, 0, $4, $4)")
                .bind(&id).bind(&code).bind(&definition).bind(now.millis()).execute(&mut *tx).await?;
            data["code"] = json!(code);
            data["code_ends_at"] = json!(ends);
        }
        let subject = crate::hot::subject_of(&crate::identity::CartKey::for_user(&shared::UserId::parse(user).map_err(|e| DurableError::Config(e.message))?).tag);
        sqlx::query(
            "INSERT INTO abandonments (user_id, activity_at, abandoned_at, subject, recovered_at) VALUES ($1, $2, $3, $4, NULL)
             ON CONFLICT (user_id) DO UPDATE SET activity_at = EXCLUDED.activity_at, abandoned_at = EXCLUDED.abandoned_at, subject = EXCLUDED.subject, recovered_at = NULL")
            .bind(user).bind(last_activity).bind(now.millis()).bind(&subject).execute(&mut *tx).await?;
        let event = Event {
            id: format!("cart.abandoned:{user}:{last_activity}"),
            kind: EventType::CartAbandoned.as_str().to_owned(),
            subject,
            user: Some(user.to_owned()),
            sku: None,
            quantity: None,
            detail: None,
            amount: Some(snapshot.total.amount()),
            at: now,
            data,
            order: Event::time_order(now),
        };
        record(&mut tx, std::slice::from_ref(&event)).await?;
        tx.commit().await?;
        Ok(true)
    })
}

/// A fresh promotion id and code for one abandoned cart.
fn discount_ids() -> (String, String) {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    let code: String = b.iter().map(|x| shared::gift_card::ALPHABET[usize::from(*x & 31)] as char).collect();
    (format!("abandon-{}", code.to_ascii_lowercase()), format!("BACK-{code}"))
}

struct Snapshot {
    lines: Vec<Value>,
    subtotal: Money,
    discount_total: Money,
    total: Money,
}

/// The cart at live prices (a line the catalog no longer sells keeps its price at add, or none),
/// with what its promotions take off.
fn snapshot(
    cart: &StoredCart,
    products: &[crate::catalog::Product],
    promotions: &[Promotion],
    now: Timestamp,
    currency: Currency,
) -> Snapshot {
    let inputs: Vec<LineInput> = cart
        .lines
        .iter()
        .map(|l| {
            let live = products.iter().find(|p| p.sku == l.sku).filter(|p| p.active).map(|p| p.price);
            LineInput { sku: l.sku.clone(), quantity: l.quantity, unit_price: live.or(l.price_at_add).filter(|p| p.currency() == currency) }
        })
        .collect();
    let e = evaluate(&Context {
        currency,
        lines: &inputs,
        promotions,
        codes: &cart.promo_codes,
        now,
        is_user: true,
        usage: |_: &PromotionId| Usage::default(),
    });
    let lines = cart
        .lines
        .iter()
        .zip(&inputs)
        .zip(&e.line_totals)
        .map(|((l, i), total)| {
            let name = products.iter().find(|p| p.sku == l.sku).map_or_else(|| l.sku.as_str().to_owned(), |p| p.name.clone());
            json!({"sku": l.sku, "name": name, "quantity": l.quantity, "unit_price": i.unit_price, "line_total": total})
        })
        .collect();
    Snapshot { lines, subtotal: e.subtotal, discount_total: e.discount_total, total: e.total }
}
