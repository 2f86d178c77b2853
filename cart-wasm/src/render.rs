//! A snapshot as text for the page, written as a change from the last one the page read.
//!
//! A page renders every change, and a cart's lines rarely all change at once: a change to one
//! line of a 100-line cart used to hand the page the whole cart as text (about 15 KB to decode,
//! split and look up). Now each client remembers the lists it last handed over, and each list is
//! written as how many lines it keeps from the start of the last one, how many from its end, and
//! the lines in between as JSON. The page (`js/cart-error.js`) keeps the same lists per client,
//! so an unchanged line keeps its object.
//!
//! The text: the JSON of every field but the three lists on the first line; this rendering's
//! number on the second; then, for `lines`, `saved` and `unavailable` in turn, a line
//! `<kept from the start> <kept from the end> <n>` followed by `n` lines of JSON, one per line
//! between. Each rendering is numbered; the page says which one it holds, and a page that holds
//! another (it missed one) gets every line in full.

use crate::engine::{LineSnapshot, Snapshot};
use shared::wire::Owner;
use shared::wire::fast_json::{availability, discount, list, money, promo_code, string, uint};

/// The lists the page last received.
#[derive(Default)]
pub struct Rendered {
    generation: u32,
    lists: [Vec<LineSnapshot>; 3],
}

impl Rendered {
    /// `snap` as text for a page that holds rendering `page` (see the module's documentation).
    pub fn render(&mut self, mut snap: Snapshot, page: u32) -> String {
        let lists = [std::mem::take(&mut snap.lines), std::mem::take(&mut snap.saved), std::mem::take(&mut snap.unavailable)];
        let mut out = Vec::with_capacity(512);
        // Empty lists are left out of the JSON: the first line is every other field.
        snapshot(&mut out, &snap);
        let fresh = page != self.generation;
        self.generation = self.generation.wrapping_add(1);
        out.push(b'\n');
        uint(&mut out, u64::from(self.generation));
        for (last, list) in self.lists.iter_mut().zip(lists) {
            let last_len = if fresh { 0 } else { last.len() };
            let head = list.iter().zip(last.iter().take(last_len)).take_while(|(a, b)| a == b).count();
            let most = list.len().min(last_len) - head;
            let tail = list.iter().rev().zip(last[..last_len].iter().rev()).take(most).take_while(|(a, b)| a == b).count();
            let between = &list[head..list.len() - tail];
            for (i, n) in [head, tail, between.len()].into_iter().enumerate() {
                out.push(if i == 0 { b'\n' } else { b' ' });
                uint(&mut out, n as u64);
            }
            for l in between {
                out.push(b'\n');
                line(&mut out, l);
            }
            *last = list;
        }
        // Only whole strings and ASCII were written.
        String::from_utf8(out).unwrap_or_default()
    }

    /// The number of the last rendering.
    #[cfg(test)]
    pub fn generation(&self) -> u32 {
        self.generation
    }
}

/// A snapshot as JSON, as serde would write it (camelCase keys, empty lists and absent values left
/// out): the module carries no serializer for it.
fn snapshot(out: &mut Vec<u8>, s: &Snapshot) {
    out.extend_from_slice(match s.owner {
        Owner::Guest => b"{\"owner\":\"guest\",\"version\":",
        Owner::User => b"{\"owner\":\"user\",\"version\":",
    });
    uint(out, s.version);
    for (name, l) in [(&b",\"lines\":"[..], &s.lines), (b",\"saved\":", &s.saved), (b",\"unavailable\":", &s.unavailable)] {
        if !l.is_empty() {
            out.extend_from_slice(name);
            list(out, l, line);
        }
    }
    out.extend_from_slice(b",\"itemCount\":");
    uint(out, s.item_count);
    out.extend_from_slice(b",\"subtotal\":");
    money(out, &s.subtotal);
    out.extend_from_slice(b",\"promoCodes\":");
    list(out, &s.promo_codes, promo_code);
    out.extend_from_slice(b",\"discounts\":");
    list(out, &s.discounts, discount);
    out.extend_from_slice(b",\"discountTotal\":");
    money(out, &s.discount_total);
    out.extend_from_slice(b",\"total\":");
    money(out, &s.total);
    out.extend_from_slice(b",\"pendingOps\":");
    uint(out, s.pending_ops as u64);
    out.extend_from_slice(if s.syncing { b",\"syncing\":true" } else { b",\"syncing\":false" });
    if let Some(e) = &s.last_error {
        out.extend_from_slice(b",\"lastError\":{\"code\":");
        string(out, &e.code);
        out.extend_from_slice(b",\"message\":");
        string(out, &e.message);
        out.push(b'}');
    }
    out.push(b'}');
}

fn optional_money(out: &mut Vec<u8>, name: &[u8], m: &Option<shared::Money>) {
    if let Some(m) = m {
        out.extend_from_slice(name);
        money(out, m);
    }
}

fn line(out: &mut Vec<u8>, l: &LineSnapshot) {
    out.extend_from_slice(b"{\"sku\":");
    string(out, l.sku.as_str());
    out.extend_from_slice(b",\"quantity\":");
    uint(out, u64::from(l.quantity));
    optional_money(out, b",\"priceAtAdd\":", &l.price_at_add);
    out.extend_from_slice(b",\"addedAt\":\"");
    l.added_at.write_rfc3339(out);
    out.push(b'"');
    optional_money(out, b",\"currentPrice\":", &l.current_price);
    if let Some(c) = l.price_changed {
        out.extend_from_slice(if c { b",\"priceChanged\":true" } else { b",\"priceChanged\":false" });
    }
    if let Some(a) = l.availability {
        out.extend_from_slice(b",\"availability\":");
        out.extend_from_slice(availability(a));
    }
    optional_money(out, b",\"discount\":", &l.discount);
    optional_money(out, b",\"lineTotal\":", &l.line_total);
    if let Some(a) = l.reason {
        out.extend_from_slice(b",\"reason\":");
        out.extend_from_slice(availability(a));
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use shared::wire::Owner;
    use shared::{Currency, Money, Sku, Timestamp};

    /// What the page does with the text: the lists it holds, rebuilt from the last ones.
    #[derive(Default)]
    struct Page {
        generation: u32,
        lists: [Vec<Value>; 3],
        /// Lines taken from the text (not kept) by the last reading.
        parsed: usize,
    }

    impl Page {
        fn read(&mut self, text: &str) -> Value {
            let mut parts = text.split('\n');
            let mut head: Value = serde_json::from_str(parts.next().unwrap()).unwrap();
            self.generation = parts.next().unwrap().parse().unwrap();
            self.parsed = 0;
            for (name, last) in ["lines", "saved", "unavailable"].into_iter().zip(&mut self.lists) {
                let n: Vec<usize> = parts.next().unwrap().split(' ').map(|n| n.parse().unwrap()).collect();
                let (kept, tail, between) = (n[0], n[1], n[2]);
                let mut list = last[..kept].to_vec();
                for _ in 0..between {
                    list.push(serde_json::from_str(parts.next().unwrap()).unwrap());
                }
                self.parsed += between;
                list.extend_from_slice(&last[last.len() - tail..]);
                *last = list.clone();
                head[name] = Value::Array(list);
            }
            assert_eq!(parts.next(), None, "nothing follows the lists");
            head
        }
    }

    fn line(sku: &str, quantity: u32) -> LineSnapshot {
        let usd = |a| Some(Money::new(a, Currency::USD).unwrap());
        LineSnapshot {
            sku: Sku::parse(sku).unwrap(),
            quantity,
            price_at_add: usd(1999),
            added_at: Timestamp::from_millis(5),
            current_price: None,
            price_changed: None,
            availability: None,
            discount: usd(0),
            line_total: usd(1999 * i64::from(quantity)),
            reason: None,
        }
    }

    fn snapshot(lines: Vec<LineSnapshot>, saved: Vec<LineSnapshot>, version: u64) -> Snapshot {
        let zero = Money::zero(Currency::USD);
        Snapshot {
            owner: Owner::Guest,
            version,
            lines,
            saved,
            unavailable: Vec::new(),
            item_count: 0,
            subtotal: zero,
            promo_codes: Vec::new(),
            discounts: Vec::new(),
            discount_total: zero,
            total: zero,
            pending_ops: 0,
            syncing: false,
            last_error: None,
        }
    }

    /// The snapshot as one JSON object, every list in full: what the page must end up with.
    fn whole(s: &Snapshot) -> Value {
        let mut v = serde_json::to_value(s).unwrap();
        v["lines"] = serde_json::to_value(&s.lines).unwrap();
        v["saved"] = serde_json::to_value(&s.saved).unwrap();
        v["unavailable"] = serde_json::to_value(&s.unavailable).unwrap();
        v
    }

    /// A change to the cart's lines and saved list.
    type Change = Box<dyn Fn(&mut Vec<LineSnapshot>, &mut Vec<LineSnapshot>)>;

    #[test]
    fn a_page_rebuilds_every_snapshot_and_reads_only_the_lines_that_changed() {
        let mut r = Rendered::default();
        let mut page = Page::default();
        let mut lines: Vec<LineSnapshot> = (0..100).map(|i| line(&format!("S{i:03}"), 1)).collect();
        let mut saved = vec![line("K1", 1)];
        // Each step: a change, and how many lines the page then parses.
        let steps: Vec<(Change, usize)> = vec![
            (Box::new(|_, _| {}), 0),
            (Box::new(|l, _| l[40].quantity = 3), 1),
            (Box::new(|l, _| l[0].quantity = 2), 1),
            (Box::new(|l, _| l[99].quantity = 2), 1),
            (Box::new(|l, _| l.push(line("T1", 1))), 1),
            (Box::new(|l, _| drop(l.remove(10))), 0),
            (Box::new(|l, s| s.push(l.remove(20))), 1),
            (Box::new(|l, _| l.insert(0, line("A0", 1))), 1),
            (Box::new(|l, _| l[5].quantity = 9), 1),
            (Box::new(|l, _| l.truncate(3)), 0),
            (
                Box::new(|l, s| {
                    s.clear();
                    l.clear();
                }),
                0,
            ),
            (Box::new(|l, _| l.extend((0..5).map(|i| line(&format!("N{i}"), 1)))), 5),
        ];
        // The first reading has nothing to start from: every line in full.
        let first = snapshot(lines.clone(), saved.clone(), 0);
        assert_eq!(page.read(&r.render(first.clone(), page.generation)), whole(&first));
        assert_eq!(page.parsed, 101);
        for (i, (change, parsed)) in steps.iter().enumerate() {
            change(&mut lines, &mut saved);
            let s = snapshot(lines.clone(), saved.clone(), i as u64 + 1);
            assert_eq!(page.read(&r.render(s.clone(), page.generation)), whole(&s), "after change {i}");
            assert_eq!(page.parsed, *parsed, "lines parsed after change {i}");
        }
        assert_eq!(r.generation(), page.generation);
    }

    #[test]
    fn a_page_that_missed_a_rendering_gets_every_line() {
        let mut r = Rendered::default();
        let mut page = Page::default();
        let lines: Vec<LineSnapshot> = (0..10).map(|i| line(&format!("S{i}"), 1)).collect();
        let s = snapshot(lines.clone(), Vec::new(), 1);
        page.read(&r.render(s.clone(), page.generation));
        // Rendered for somebody else (or the page failed while reading it).
        let _ = r.render(snapshot(Vec::new(), Vec::new(), 2), page.generation);
        let mut again = lines;
        again[3].quantity = 4;
        let s = snapshot(again, Vec::new(), 3);
        assert_eq!(page.read(&r.render(s.clone(), page.generation)), whole(&s));
        assert_eq!(page.parsed, 10);
    }

    #[test]
    fn the_hand_written_json_is_serdes_byte_for_byte() {
        use crate::engine::LastError;
        use shared::promo::PromoCode;
        use shared::wire::{Availability, DiscountView, PromoCodeView};
        let state = std::cell::Cell::new(0x2545_f491_4f6c_dd1du64);
        let next = |m: u64| {
            let mut n = state.get();
            n ^= n << 13;
            n ^= n >> 7;
            n ^= n << 17;
            state.set(n);
            n % m
        };
        let states = [
            None,
            Some(Availability::InStock),
            Some(Availability::LowStock),
            Some(Availability::OutOfStock),
            Some(Availability::Discontinued),
            Some(Availability::Unknown),
        ];
        let texts = ["", "plain", "a \"quoted\" \\ word", "line\nbreak\ttab\u{1}", "ünïcødé €5 off"];
        for case in 0..400 {
            let money = |m: u64| (next(m) > 0).then(|| Money::new(next(1_000_000) as i64, Currency::USD).unwrap());
            let mut lines = Vec::new();
            for i in 0..next(4) {
                let mut l = line(&format!("S-{case}.{i}"), next(999) as u32 + 1);
                l.price_at_add = money(3);
                l.current_price = money(2);
                l.discount = money(2);
                l.line_total = money(2);
                l.added_at = Timestamp::from_millis(next(4_000_000_000_000) as i64);
                l.price_changed = [None, Some(true), Some(false)][next(3) as usize];
                l.availability = states[next(6) as usize];
                l.reason = states[next(6) as usize];
                lines.push(l);
            }
            let mut s = snapshot(lines.clone(), if next(2) == 0 { Vec::new() } else { lines }, next(1 << 40));
            s.owner = if next(2) == 0 { Owner::Guest } else { Owner::User };
            s.item_count = next(100_000);
            s.pending_ops = next(600) as usize;
            s.syncing = next(2) == 0;
            for i in 0..next(3) {
                s.promo_codes.push(PromoCodeView {
                    code: PromoCode::parse(&format!("CODE{i}")).unwrap(),
                    applied: next(2) == 0,
                    reason: (next(2) == 0).then(|| texts[next(5) as usize].to_owned()),
                    missing: money(2),
                    pending: (next(2) == 0).then_some(true),
                });
                s.discounts.push(DiscountView {
                    promotion: texts[next(5) as usize].to_owned(),
                    code: (next(2) == 0).then(|| PromoCode::parse("SAVE").unwrap()),
                    description: texts[next(5) as usize].to_owned(),
                    amount: Money::new(next(5000) as i64, Currency::USD).unwrap(),
                });
            }
            if next(2) == 0 {
                s.last_error = Some(LastError { code: "network_error".into(), message: texts[next(5) as usize].to_owned() });
            }
            let mut out = Vec::new();
            super::snapshot(&mut out, &s);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap(), "case {case}");
        }
    }
}
