//! Properties of the cart core that every client and the server rely on.

use proptest::prelude::*;
use shared::promo::Usage;
use shared::wire::{CartView, Owner, Promos, op_text, op_to_json, parse_ops};
use shared::{Cart, CartState, Currency, Limits, MergePolicy, Money, Op, OpId, OpKind, OpOutcome, Quantity, Sku, Timestamp, merge};

const SKUS: [&str; 6] = ["A", "B", "C", "D", "E", "F"];

fn limits() -> Limits {
    Limits { max_line_quantity: 9, max_lines: 4 }
}

fn op_kind() -> impl Strategy<Value = OpKind> {
    let sku = prop::sample::select(&SKUS[..]).prop_map(|s| Sku::parse(s).unwrap());
    let qty = (1i64..=9).prop_map(|q| Quantity::new(q, &limits()).unwrap());
    let price = prop::option::of((0i64..5000).prop_map(|a| Money::new(a, Currency::USD).unwrap()));
    prop_oneof![
        4 => (sku.clone(), qty.clone(), price).prop_map(|(sku, quantity, price_at_add)| OpKind::Add { sku, quantity, price_at_add }),
        2 => (sku.clone(), qty).prop_map(|(sku, quantity)| OpKind::SetQuantity { sku, quantity }),
        1 => sku.clone().prop_map(|sku| OpKind::Remove { sku }),
        2 => sku.clone().prop_map(|sku| OpKind::SaveForLater { sku }),
        2 => sku.clone().prop_map(|sku| OpKind::MoveToCart { sku }),
        1 => sku.prop_map(|sku| OpKind::RemoveSaved { sku }),
        1 => Just(OpKind::Clear),
        1 => prop::sample::select(&["X1", "X2", "X3", "X4", "X5", "X6"][..])
            .prop_map(|c| OpKind::ApplyPromoCode { code: shared::promo::PromoCode::parse(c).unwrap() }),
        1 => prop::sample::select(&["X1", "X2", "X3"][..])
            .prop_map(|c| OpKind::RemovePromoCode { code: shared::promo::PromoCode::parse(c).unwrap() }),
    ]
}

fn cart_from(kinds: &[OpKind]) -> Cart {
    let mut c = Cart::new(Currency::USD);
    for (i, k) in kinds.iter().enumerate() {
        let _ = c.apply(k, &limits(), Timestamp::from_millis(i as i64));
    }
    c
}

fn assert_invariants(c: &Cart, l: &Limits) -> Result<(), TestCaseError> {
    for list in [&c.lines, &c.saved] {
        prop_assert!(list.len() <= l.max_lines);
        for w in list.windows(2) {
            prop_assert!(w[0].seq < w[1].seq, "sorted by seq");
        }
        let mut skus: Vec<_> = list.iter().map(|x| &x.sku).collect();
        skus.sort();
        skus.dedup();
        prop_assert_eq!(skus.len(), list.len(), "one line per SKU");
        for line in list {
            prop_assert!((1..=l.max_line_quantity).contains(&line.quantity));
            prop_assert!(line.seq < c.next_seq);
        }
    }
    prop_assert!(c.promo_codes.len() <= shared::promo::MAX_PROMO_CODES);
    let mut codes = c.promo_codes.clone();
    codes.sort();
    codes.dedup();
    prop_assert_eq!(codes.len(), c.promo_codes.len(), "each code once");
    Ok(())
}

proptest! {
    #[test]
    fn applying_ops_never_breaks_the_limits_and_versions_count_changes(kinds in prop::collection::vec(op_kind(), 0..60)) {
        let l = limits();
        let mut c = Cart::new(Currency::USD);
        let mut changes = 0;
        for (i, k) in kinds.iter().enumerate() {
            let before = c.clone();
            match c.apply(k, &l, Timestamp::from_millis(i as i64)) {
                Ok(true) => changes += 1,
                Ok(false) => prop_assert_eq!(&c, &before),
                Err(_) => prop_assert_eq!(&c, &before, "a rejected op changes nothing"),
            }
            assert_invariants(&c, &l)?;
        }
        prop_assert_eq!(c.version, changes);
    }

    #[test]
    fn replaying_applied_op_ids_changes_nothing(kinds in prop::collection::vec(op_kind(), 1..40)) {
        let l = limits();
        let ops: Vec<Op> = kinds.into_iter().enumerate().map(|(i, kind)| Op { id: OpId::parse(&format!("op-{i}")).unwrap(), kind }).collect();
        let mut s = CartState::new(Cart::new(Currency::USD));
        let first: Vec<OpOutcome> = ops.iter().map(|op| s.apply_op(op, &l, Timestamp::from_millis(1))).collect();
        let after_first = s.clone();
        for (op, out) in ops.iter().zip(&first) {
            let again = s.apply_op(op, &l, Timestamp::from_millis(2));
            if *out == OpOutcome::Applied {
                prop_assert_eq!(again, OpOutcome::Duplicate);
            }
        }
        // Only previously rejected ops may apply on the replay; applied ones never twice.
        if first.iter().all(|o| *o == OpOutcome::Applied) {
            prop_assert_eq!(s, after_first);
        }
    }

    #[test]
    fn merge_follows_its_policy_line_by_line(
        user_ops in prop::collection::vec(op_kind(), 0..30),
        guest_ops in prop::collection::vec(op_kind(), 0..30),
        policy in prop_oneof![Just(MergePolicy::Sum), Just(MergePolicy::Max), Just(MergePolicy::KeepUser)],
    ) {
        let l = limits();
        let user = cart_from(&user_ops);
        let guest = cart_from(&guest_ops);
        let mut merged = user.clone();
        let changed = merge(&mut merged, &guest, policy, &l, Timestamp::from_millis(99));
        assert_invariants(&merged, &l)?;
        prop_assert_eq!(merged.version, user.version + u64::from(changed));
        for (ulist, glist, mlist) in [(&user.lines, &guest.lines, &merged.lines), (&user.saved, &guest.saved, &merged.saved)] {
            // Every user line survives, in the user's order, ahead of anything that came over.
            for (i, u) in ulist.iter().enumerate() {
                prop_assert_eq!(&mlist[i].sku, &u.sku);
                let expected = match glist.iter().find(|g| g.sku == u.sku) {
                    None => u.quantity,
                    Some(g) => match policy {
                        MergePolicy::Sum => (u.quantity + g.quantity).min(l.max_line_quantity),
                        MergePolicy::Max => u.quantity.max(g.quantity),
                        MergePolicy::KeepUser => u.quantity,
                    },
                };
                prop_assert_eq!(mlist[i].quantity, expected);
            }
            // Guest-only lines come over whole, in guest order, while there is room.
            let guest_only: Vec<_> = glist.iter().filter(|g| !ulist.iter().any(|u| u.sku == g.sku)).collect();
            let room = l.max_lines - ulist.len();
            let came_over = &mlist[ulist.len()..];
            prop_assert_eq!(came_over.len(), guest_only.len().min(room));
            for (m, g) in came_over.iter().zip(guest_only) {
                prop_assert_eq!((&m.sku, m.quantity, m.price_at_add, m.added_at), (&g.sku, g.quantity, g.price_at_add, g.added_at));
            }
        }
    }

    #[test]
    fn ops_and_cart_views_survive_a_serde_round_trip(kinds in prop::collection::vec(op_kind(), 0..30)) {
        let l = limits();
        // Every other op numbered by its client, as a browser tab numbers them.
        let id = |i: usize| {
            let id = OpId::parse(&format!("o{i}")).unwrap();
            if i % 2 == 1 { id.with_client(shared::ClientSeq::parse("tab-1", i as u64).unwrap()) } else { id }
        };
        let ops: Vec<Op> = kinds.iter().cloned().enumerate().map(|(i, kind)| Op { id: id(i), kind }).collect();
        for o in &ops {
            // The hand-written text is what serde_json writes for the same object (sorted keys).
            let text = op_text(o, Some(Timestamp::from_millis(5)));
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(serde_json::to_string(&value).unwrap(), text);
            prop_assert_eq!(value, op_to_json(o, Some(Timestamp::from_millis(5))));
        }
        let wire = serde_json::Value::Array(ops.iter().map(|o| op_to_json(o, Some(Timestamp::from_millis(5)))).collect());
        let text = serde_json::to_string(&wire).unwrap();
        let back = parse_ops(Some(&serde_json::from_str(&text).unwrap()), &l).unwrap();
        prop_assert_eq!(back, ops.into_iter().map(|o| (o.id, Ok(o.kind))).collect::<Vec<_>>());

        let cart = cart_from(&kinds);
        let view = CartView::new(&cart, Owner::Guest, Timestamp::from_millis(7), |_| None, &Promos::none());
        let json = serde_json::to_string(&view).unwrap();
        let mut fast = Vec::new();
        view.write_json(&mut fast);
        prop_assert_eq!(String::from_utf8(fast).unwrap(), json.clone(), "the hand-written JSON is serde's");
        prop_assert_eq!(&serde_json::from_str::<CartView>(&json).unwrap(), &view);
        // The hand-written reader of the WebAssembly client agrees with serde.
        prop_assert_eq!(&shared::wire::read::cart(&serde_json::from_str(&json).unwrap()).unwrap(), &view);
        let stored = shared::stored::StoredCart::from(&cart);
        prop_assert_eq!(shared::stored::StoredCart::from_json(&serde_json::to_value(&stored).unwrap()), Some(stored));
    }
}

proptest! {
    /// The hand-written JSON of a cart is serde_json's, byte for byte, with every optional field,
    /// annotation, owner and timestamp shape (milliseconds or not, far past and future).
    #[test]
    fn the_hand_written_cart_json_is_serdes(
        kinds in prop::collection::vec(op_kind(), 0..30),
        annotations in prop::collection::vec(prop::option::of((prop::option::of(0i64..100_000), 0usize..5)), 12),
        times in prop::collection::vec(prop_oneof![0i64..4_000_000_000_000, i64::MIN / 4..i64::MAX / 4], 3),
        user in any::<bool>(),
    ) {
        use shared::wire::{Annotation, Availability};
        let mut cart = cart_from(&kinds);
        cart.updated_at = Timestamp::from_millis(times[0]);
        if let Some(l) = cart.lines.first_mut() {
            l.added_at = Timestamp::from_millis(times[1]);
        }
        let kinds_of = [Availability::InStock, Availability::LowStock, Availability::OutOfStock, Availability::Unknown, Availability::Discontinued];
        let mut next = annotations.iter().cycle();
        let view = CartView::new(&cart, if user { Owner::User } else { Owner::Guest }, Timestamp::from_millis(times[2]), |_| {
            next.next().unwrap().map(|(price, a)| Annotation {
                current_price: price.map(|p| Money::new(p, Currency::USD).unwrap()),
                availability: kinds_of[a],
            })
        }, &Promos { promotions: &sample_promotions(), usage: &|_| Usage::default(), now: Timestamp::from_millis(times[0]) });
        let mut fast = Vec::new();
        view.write_json(&mut fast);
        let json = serde_json::to_string(&view).unwrap();
        prop_assert_eq!(String::from_utf8(fast).unwrap(), json.clone());
        if times.iter().all(|t| (0..4_000_000_000_000).contains(t)) {
            prop_assert_eq!(&shared::wire::read::cart(&serde_json::from_str(&json).unwrap()).unwrap(), &view);
        }
        // The contract's sums.
        let sum = |f: &dyn Fn(&shared::wire::LineView) -> i64| view.lines.iter().map(f).sum::<i64>();
        prop_assert_eq!(view.total.amount(), view.subtotal.amount() - view.discount_total.amount());
        prop_assert_eq!(view.discount_total.amount(), view.discounts.iter().map(|d| d.amount.amount()).sum::<i64>());
        prop_assert_eq!(view.discount_total.amount(), sum(&|l| l.discount.unwrap().amount()));
        prop_assert_eq!(view.total.amount(), sum(&|l| l.line_total.unwrap().amount()));
        prop_assert!(view.lines.iter().all(|l| l.line_total.unwrap().amount() >= 0));
        prop_assert!(view.saved.iter().all(|l| l.discount.is_none() && l.line_total.is_none()));
        // Unavailable lines: every cart line is in one of the two lists, and only the available
        // ones count.
        prop_assert_eq!(view.lines.len() + view.unavailable.len(), cart.lines.len());
        prop_assert!(view.unavailable.iter().all(|l| matches!(l.reason, Some(Availability::OutOfStock | Availability::Discontinued)) && l.reason == l.availability));
        prop_assert!(view.lines.iter().all(|l| l.reason.is_none() && !matches!(l.availability, Some(Availability::OutOfStock | Availability::Discontinued))));
        prop_assert_eq!(view.item_count, view.lines.iter().map(|l| u64::from(l.quantity)).sum::<u64>());
        prop_assert_eq!(view.promo_codes.len(), cart.promo_codes.len());
        // The stored form's hand-written JSON too (the far timestamps included).
        cart.accessed_at = Timestamp::from_millis(times[2]);
        let stored = shared::stored::StoredCart::from(&cart);
        let mut fast = Vec::new();
        stored.write_json(&mut fast);
        prop_assert_eq!(String::from_utf8(fast).unwrap(), serde_json::to_string(&stored).unwrap());
    }
}

/// Promotions for the codes of `op_kind` (X1 to X6, X6 unknown) and one automatic one: every
/// field of a view's promotions part shows up (reasons, what is missing, discounts with and
/// without a code).
fn sample_promotions() -> Vec<shared::promo::Promotion> {
    use serde_json::json;
    let defs = [
        (
            "auto",
            json!({"description": "A \"deal\"", "action": {"type": "percent_off_items", "percent": 15, "skus": ["A", "B"]}, "combinable": true}),
        ),
        (
            "x1",
            json!({"code": "X1", "action": {"type": "percent_off_order", "percent": 10}, "min_subtotal": {"amount": 4000, "currency": "USD"}, "combinable": true}),
        ),
        ("x2", json!({"code": "X2", "action": {"type": "amount_off_order", "amount": {"amount": 700, "currency": "USD"}}})),
        (
            "x3",
            json!({"code": "X3", "action": {"type": "buy_x_get_y", "skus": ["C", "D"], "buy": 1, "get": 1, "percent": 50}, "combinable": true}),
        ),
        (
            "x4",
            json!({"code": "X4", "action": {"type": "bundle", "items": [{"sku": "E", "quantity": 1}, {"sku": "F", "quantity": 1}], "price": {"amount": 100, "currency": "USD"}}}),
        ),
        ("x5", json!({"code": "X5", "action": {"type": "percent_off_order", "percent": 50}, "usage_limit_per_customer": 1})),
    ];
    defs.into_iter()
        .map(|(id, d)| shared::promo_json::parse_promotion(shared::promo::PromotionId::parse(id).unwrap(), &d, Currency::USD).unwrap())
        .collect()
}

fn line_qty(c: &Cart, sku: &str) -> Option<u32> {
    c.line(&Sku::parse(sku).unwrap()).map(|l| l.quantity)
}

#[test]
fn the_seed_merge_example_sums_shared_skus() {
    let l = Limits::default();
    let add = |c: &mut Cart, s: &str, q: i64| {
        c.apply(
            &OpKind::Add { sku: Sku::parse(s).unwrap(), quantity: Quantity::new(q, &l).unwrap(), price_at_add: None },
            &l,
            Timestamp::default(),
        )
        .unwrap();
    };
    let mut guest = Cart::new(Currency::USD);
    add(&mut guest, "A", 2);
    add(&mut guest, "B", 1);
    let mut user = Cart::new(Currency::USD);
    add(&mut user, "A", 1);
    add(&mut user, "C", 3);
    assert!(merge(&mut user, &guest, MergePolicy::Sum, &l, Timestamp::default()));
    let got: Vec<(&str, u32)> = user.lines.iter().map(|x| (x.sku.as_str(), x.quantity)).collect();
    assert_eq!(got, [("A", 3), ("C", 3), ("B", 1)]);
    assert_eq!((line_qty(&user, "A"), line_qty(&user, "B"), line_qty(&user, "C")), (Some(3), Some(1), Some(3)));
}

#[test]
fn the_hand_written_readers_agree_with_serde_on_every_response() {
    use shared::wire::{ErrorBody, MergeResponse, OpResult, OpsResponse, OrderLineView, OrderView, read};
    let usd = |a| Money::new(a, Currency::USD).unwrap();
    let view = CartView::new(&Cart::new(Currency::USD), Owner::User, Timestamp::from_millis(9), |_| None, &Promos::none());
    let mut details = serde_json::Map::new();
    details.insert("items".into(), serde_json::json!([{"sku": "A"}]));
    let ops = OpsResponse {
        cart: view.clone(),
        results: vec![
            OpResult { op_id: "a".into(), status: "applied".into(), error: None },
            OpResult {
                op_id: "b".into(),
                status: "rejected".into(),
                error: Some(ErrorBody { code: "cart_full".into(), message: "full".into(), details }),
            },
        ],
    };
    let back = |v: &dyn erased::Ser| serde_json::from_str::<serde_json::Value>(&v.json()).unwrap();
    assert_eq!(read::ops_response(&back(&ops)).unwrap(), ops);
    let merge = MergeResponse { cart: view, merged: true };
    assert_eq!(read::merge_response(&back(&merge)).unwrap(), merge);
    let order = OrderView {
        id: "ord_1".into(),
        status: "pending_payment".into(),
        lines: vec![OrderLineView {
            sku: Sku::parse("A").unwrap(),
            quantity: 2,
            unit_price: usd(5),
            price_at_add: Some(usd(4)),
            discount: Some(usd(1)),
            line_total: usd(9),
        }],
        subtotal: usd(10),
        discounts: vec![shared::wire::DiscountView {
            promotion: "p".into(),
            code: Some(shared::promo::PromoCode::parse("P").unwrap()),
            description: "one off".into(),
            amount: usd(1),
        }],
        discount_total: usd(1),
        total: usd(9),
        gift_cards: vec![shared::wire::GiftCardUse { last4: "ABCD".into(), amount: usd(4) }],
        amount_due: usd(5),
        reserved_until: Timestamp::from_millis(1000),
        created_at: Timestamp::from_millis(500),
        payment_ref: None,
    };
    assert_eq!(read::order(&back(&order)).unwrap(), order);
    assert!(read::cart(&serde_json::json!({"owner": "robot"})).is_err());
}

/// Serializes any of the response types to JSON text (a tiny object-safe wrapper for the test).
mod erased {
    pub trait Ser {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap()
        }
    }
}

/// Any JSON value: every number kind (floats included), strings with quotes, backslashes,
/// control characters and any Unicode, nested arrays and objects.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[\"\\\\\\x00-\\x1f a]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..8).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    /// The browser module's JSON writer is serde_json's, byte for byte.
    #[test]
    fn the_hand_written_json_writer_is_serdes(v in json_value()) {
        prop_assert_eq!(shared::json::text(&v), serde_json::to_string(&v).unwrap());
    }
}
