//! What a cart remembers of the ops it applied, so that each is applied at most once — bounded,
//! never a list that grows with every op (`api-v1.md`, Ops):
//!
//! - an op from a client that numbers its ops (`client_id`, `seq` 1, 2, 3, …) is known by that
//!   client's high-water `seq`, as Replicache keeps one mutation id per client. A client's ops
//!   arrive in order: one that skips ahead is refused before anything is applied
//!   ([`Applied::check_order`]). A client the cart does not know starts wherever it is. At most
//!   [`MAX_CLIENTS`] are kept; past that the one that sent least recently is forgotten.
//! - an op with only an `op_id` is known among the cart's most recent [`RECENT_OPS`] such ids,
//!   each with a position that only grows (the durable store keeps the same positions and
//!   writes only those past what it has).
//! - an untracked op (a REST call's) is recorded nowhere.
//!
//! `common.lua` keeps exactly this in the cart's op-id hash, and the Lua equivalence test holds
//! the two together.

use crate::op::{ClientSeq, Op, OpId};
use std::collections::BTreeMap;

/// Op ids without a client kept per cart (at least this many of the most recent).
pub const RECENT_OPS: usize = 1000;
/// Clients whose high-water `seq` a cart keeps.
pub const MAX_CLIENTS: usize = 64;

/// A client's high-water mark: the highest `seq` applied, and when (ms) it last sent one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub seq: u64,
    pub at: i64,
}

/// An op that skips ahead of its client's high-water mark: nothing of its request is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutOfOrder {
    pub client: String,
    /// The `seq` the server expects next from the client.
    pub expected: u64,
    pub got: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    clients: BTreeMap<String, Mark>,
    /// Position → op id, oldest first; at most [`RECENT_OPS`].
    recent: BTreeMap<u64, String>,
    /// Op id → position.
    ids: BTreeMap<String, u64>,
    /// The position the next op id takes.
    next: u64,
}

impl Applied {
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty() && self.recent.is_empty()
    }

    /// Rebuilds what a store kept: the client marks and the positioned op ids. Positions that
    /// repeat (rows written before positions existed) are renumbered in the given order.
    pub fn from_parts(clients: impl IntoIterator<Item = (String, Mark)>, ids: impl IntoIterator<Item = (u64, String)>) -> Applied {
        let mut a = Applied { clients: clients.into_iter().collect(), ..Applied::default() };
        let mut list: Vec<(u64, String)> = ids.into_iter().collect();
        crate::sort::sort(&mut list);
        for (n, id) in list {
            let n = n.max(a.next);
            if a.ids.contains_key(&id) {
                continue;
            }
            a.recent.insert(n, id.clone());
            a.ids.insert(id, n);
            a.next = n + 1;
        }
        a.trim();
        a
    }

    pub fn clients(&self) -> impl Iterator<Item = (&str, Mark)> {
        self.clients.iter().map(|(c, m)| (c.as_str(), *m))
    }

    /// The kept op ids with their positions, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = (u64, &str)> {
        self.recent.iter().map(|(n, id)| (*n, id.as_str()))
    }

    pub fn contains_id(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    pub fn mark(&self, client: &str) -> Option<Mark> {
        self.clients.get(client).copied()
    }

    /// Whether `id` was applied (or, for a client's op, settled) before.
    pub fn is_duplicate(&self, id: &OpId) -> bool {
        match id.client() {
            Some(ClientSeq { client, seq }) => self.clients.get(client.as_str()).is_some_and(|m| *seq <= m.seq),
            None => id.is_tracked() && self.ids.contains_key(id.as_str()),
        }
    }

    /// Checks that every client's ops in `ops` follow on from its mark (duplicates allowed,
    /// gaps not), before any is applied. A client the cart does not know starts at its first op.
    pub fn check_order(&self, ops: &[Op]) -> Result<(), OutOfOrder> {
        let mut running: BTreeMap<&str, u64> = BTreeMap::new();
        for op in ops {
            let Some(ClientSeq { client, seq }) = op.id.client() else { continue };
            let known = running.get(client.as_str()).copied().or_else(|| self.clients.get(client.as_str()).map(|m| m.seq));
            match known {
                Some(hw) if *seq <= hw => {}
                Some(hw) if *seq == hw + 1 => {
                    running.insert(client.as_str(), *seq);
                }
                Some(hw) => return Err(OutOfOrder { client: client.clone(), expected: hw + 1, got: *seq }),
                None => {
                    running.insert(client.as_str(), *seq);
                }
            }
        }
        Ok(())
    }

    /// Records `id` as applied. A client's op is recorded whatever its outcome (the client
    /// settles it either way); an op id only when applied (the caller's choice).
    pub fn record(&mut self, id: &OpId, now: i64) {
        match id.client() {
            Some(ClientSeq { client, seq }) => self.record_mark(client, *seq, now),
            None if id.is_tracked() => self.push_id(id.as_str()),
            None => {}
        }
    }

    fn record_mark(&mut self, client: &str, seq: u64, now: i64) {
        if let Some(m) = self.clients.get_mut(client) {
            m.seq = m.seq.max(seq);
            m.at = now;
            return;
        }
        if self.clients.len() >= MAX_CLIENTS {
            // The client that sent least recently (the first by name among equals) is forgotten.
            let oldest = self.clients.iter().min_by(|a, b| a.1.at.cmp(&b.1.at).then(a.0.cmp(b.0))).map(|(c, _)| c.clone());
            if let Some(c) = oldest {
                self.clients.remove(&c);
            }
        }
        self.clients.insert(client.to_owned(), Mark { seq, at: now });
    }

    /// Adds an op id at the next position, forgetting the oldest past [`RECENT_OPS`].
    pub fn push_id(&mut self, id: &str) {
        if self.ids.contains_key(id) {
            return;
        }
        self.recent.insert(self.next, id.to_owned());
        self.ids.insert(id.to_owned(), self.next);
        self.next += 1;
        self.trim();
    }

    fn trim(&mut self) {
        while self.recent.len() > RECENT_OPS {
            if let Some((_, id)) = self.recent.pop_first() {
                self.ids.remove(&id);
            }
        }
    }

    /// A merge's takeover of the guest cart's ops: its op ids (oldest first) join this cart's,
    /// and each of its clients' marks is raised to the guest's, so an op the guest cart applied
    /// stays applied once it is sent again for the user.
    pub fn absorb(&mut self, guest: &Applied, now: i64) {
        for id in guest.recent.values() {
            self.push_id(id);
        }
        for (client, m) in &guest.clients {
            self.record_mark(client, m.seq, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::OpKind;

    fn id(s: &str) -> OpId {
        OpId::parse(s).unwrap()
    }

    fn from(client: &str, seq: u64) -> OpId {
        id(&format!("{client}-{seq}")).with_client(ClientSeq::parse(client, seq).unwrap())
    }

    fn op(id: OpId) -> Op {
        Op { id, kind: OpKind::Clear }
    }

    #[test]
    fn op_ids_are_kept_for_the_most_recent_thousand() {
        let mut a = Applied::default();
        for i in 0..RECENT_OPS + 5 {
            a.record(&id(&format!("o{i}")), 0);
        }
        assert!(!a.is_duplicate(&id("o4")), "the oldest are forgotten");
        assert!(a.is_duplicate(&id("o5")));
        assert!(a.is_duplicate(&id(&format!("o{}", RECENT_OPS + 4))));
        assert_eq!(a.recent().count(), RECENT_OPS);
        assert_eq!(a.recent().next(), Some((5, "o5")));
        a.record(&OpId::untracked(), 0);
        assert!(!a.is_duplicate(&OpId::untracked()));
        assert_eq!(a.recent().count(), RECENT_OPS);
    }

    #[test]
    fn a_clients_ops_are_known_by_its_high_water_mark() {
        let mut a = Applied::default();
        assert_eq!(a.check_order(&[op(from("tab", 7)), op(from("tab", 8))]), Ok(()), "an unknown client starts anywhere");
        a.record(&from("tab", 7), 1);
        a.record(&from("tab", 8), 2);
        assert!(a.is_duplicate(&from("tab", 3)));
        assert!(a.is_duplicate(&from("tab", 8)));
        assert!(!a.is_duplicate(&from("tab", 9)));
        assert_eq!(a.check_order(&[op(from("tab", 8)), op(from("tab", 9)), op(from("tab", 10))]), Ok(()));
        assert_eq!(
            a.check_order(&[op(from("tab", 9)), op(from("tab", 11))]),
            Err(OutOfOrder { client: "tab".into(), expected: 10, got: 11 })
        );
        assert_eq!(a.check_order(&[op(from("tab", 10))]), Err(OutOfOrder { client: "tab".into(), expected: 9, got: 10 }));
        assert_eq!(a.recent().count(), 0, "a client's ops take no op-id slots");
    }

    #[test]
    fn past_the_client_limit_the_least_recent_client_is_forgotten() {
        let mut a = Applied::default();
        for c in 0..MAX_CLIENTS {
            a.record(&from(&format!("c{c}"), 1), c as i64);
        }
        a.record(&from("c0", 2), 1000);
        a.record(&from("new", 1), 1001);
        assert_eq!(a.clients().count(), MAX_CLIENTS);
        assert!(a.mark("c1").is_none(), "c1 sent least recently");
        assert!(a.mark("c0").is_some() && a.mark("new").is_some());
    }

    #[test]
    fn a_merge_takes_over_the_guests_ops_and_marks() {
        let mut guest = Applied::default();
        guest.record(&id("g1"), 0);
        guest.record(&from("tab", 4), 0);
        let mut user = Applied::default();
        user.record(&id("u1"), 0);
        user.record(&from("tab", 2), 0);
        user.absorb(&guest, 9);
        assert!(user.is_duplicate(&id("g1")) && user.is_duplicate(&id("u1")));
        assert_eq!(user.mark("tab"), Some(Mark { seq: 4, at: 9 }));
        assert_eq!(user.recent().collect::<Vec<_>>(), [(0, "u1"), (1, "g1")]);
    }

    #[test]
    fn rebuilt_from_rows_it_keeps_positions_and_renumbers_repeats() {
        let a = Applied::from_parts([], [(0, "b".to_owned()), (0, "a".to_owned()), (7, "c".to_owned())]);
        assert_eq!(a.recent().collect::<Vec<_>>(), [(0, "a"), (1, "b"), (7, "c")]);
        let mut b = a.clone();
        b.push_id("d");
        assert_eq!(b.recent().last(), Some((8, "d")));
    }
}
