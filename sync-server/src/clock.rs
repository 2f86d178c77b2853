//! The wall clock. It is read once per request (or per background pass) and the time passed
//! down, so everything below a handler, and all of `shared`, works from a given `now`.

use shared::Timestamp;

pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    Timestamp::from_millis(ms)
}
