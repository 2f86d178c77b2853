//! The event recorder: moves cart events from the hot store's event queue into the `events`
//! table, a batch per transaction. An event's id is its queue entry's, so an entry recorded
//! twice (a crash between the commit and the acknowledgement) is one event.

use super::{Event, record};
use crate::durable::{Durable, DurableError, on_db};
use crate::hot::{EntryId, HotStore, Queue, QueueEntry};
use crate::queues::{Failure, Handler};
use serde_json::{Value, json};
use shared::Timestamp;
use shared::events::{EventType, OpEvent, op_data};
use tokio::sync::watch;

/// A stream entry's position (`<ms>-<seq>`), zero-padded so that positions sort in the order
/// the stream took the entries.
fn stream_position(id: &EntryId) -> String {
    match id.id.split_once('-').and_then(|(ms, seq)| Some((ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?))) {
        Some((ms, seq)) => format!("{ms:013}-{seq:06}"),
        None => id.id.clone(),
    }
}

/// The event of a queue entry (fields as `hot::event_fields` and the Lua scripts write them).
pub fn event_of(entry: &QueueEntry) -> Result<Event, String> {
    let f = |k: &str| entry.field(k).ok_or_else(|| format!("an event entry without {k:?}: {:?}", entry.fields));
    let kind_name = f("t")?;
    let kind = EventType::parse(kind_name).ok_or_else(|| format!("unknown event type {kind_name:?}"))?;
    let subject = f("j")?.to_owned();
    let user = Some(f("u")?).filter(|u| !u.is_empty()).map(str::to_owned);
    let version: u64 = f("v")?.parse().map_err(|_| "a bad version".to_owned())?;
    let sku = Some(f("s")?).filter(|s| !s.is_empty());
    let quantity: u32 = f("q")?.parse().map_err(|_| "a bad quantity".to_owned())?;
    let extra = f("x")?.to_owned();
    let at = Timestamp::from_millis(f("m")?.parse().map_err(|_| "a bad time".to_owned())?);
    let owner_is_user = user.is_some();
    let data: Value = match kind {
        EventType::CartCreated => json!({"owner": if owner_is_user { "user" } else { "guest" }, "cart_version": version}),
        EventType::Merged => json!({"owner": "user", "cart_version": version, "guest_subject": extra, "guest_lines": quantity}),
        _ => {
            let e = OpEvent { kind, sku: sku.and_then(|s| shared::Sku::parse(s).ok()), quantity, extra: extra.clone(), version };
            op_data(&e, owner_is_user, None)
        }
    };
    let mut data = data;
    if let Some(u) = &user {
        data["user"] = json!(u);
    }
    // The id is the same on every redelivery: the stream entry's (bucket and position), or the
    // one the in-process store gave it. Its position orders the cart's events: the order in
    // which the changes were made.
    let (id, order) = match entry.field("i") {
        Some(i) => (i.to_owned(), i.trim_start_matches('m').to_owned()),
        None => {
            let position = stream_position(&entry.id);
            (format!("e{:03}-{position}", entry.id.bucket), position)
        }
    };
    Ok(Event {
        id,
        kind: kind.as_str().to_owned(),
        subject,
        user,
        sku: sku.map(str::to_owned),
        quantity: Some(i64::from(quantity)),
        detail: Some(extra).filter(|x| !x.is_empty()),
        amount: None,
        at,
        data,
        order,
    })
}

struct Recorder {
    durable: Durable,
}

impl Handler for Recorder {
    async fn handle(&self, batch: &[QueueEntry]) -> Vec<Result<(), Failure>> {
        let parsed: Vec<Result<Event, String>> = batch.iter().map(event_of).collect();
        let good: Vec<Event> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
        let written = write(&self.durable, &good).await;
        parsed
            .into_iter()
            .map(|p| match (p, &written) {
                (Err(e), _) => Err(Failure::Permanent(e)),
                (Ok(_), Ok(())) => Ok(()),
                (Ok(_), Err(e)) => Err(Failure::Transient(e.to_string())),
            })
            .collect()
    }
}

async fn write(db: &Durable, events: &[Event]) -> Result<(), DurableError> {
    if events.is_empty() {
        return Ok(());
    }
    let new = on_db!(db, pool => {
        let mut tx = pool.begin().await?;
        let n = record(&mut tx, events).await?;
        tx.commit().await?;
        n
    });
    if new > 0 {
        crate::metrics::count("cartsync_events_recorded_total", new as u64);
        super::webhooks::wake();
    }
    Ok(())
}

/// Runs until `stop` turns true, then drains what is queued and returns.
pub async fn run(hot: HotStore, durable: Durable, stop: watch::Receiver<bool>) {
    let recorder = Recorder { durable: durable.clone() };
    hot.recorder_started();
    crate::queues::run(hot, Queue::Events, durable, recorder, stop).await;
}
