//! The storage layer in a real browser (headless Chromium through wasm-bindgen-test): corrupt,
//! foreign and old-format data, a full quota, and a reload that must lose nothing.
#![cfg(all(target_arch = "wasm32", feature = "client"))]

use cart_wasm::CartClient;
use js_sys::Reflect;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn storage() -> web_sys::Storage {
    web_sys::window().unwrap().local_storage().unwrap().unwrap()
}

fn options(key: &str) -> JsValue {
    let o = js_sys::Object::new();
    Reflect::set(&o, &"storageKey".into(), &key.into()).unwrap();
    o.into()
}

fn get(v: &JsValue, path: &[&str]) -> JsValue {
    path.iter().fold(v.clone(), |v, k| Reflect::get(&v, &(*k).into()).unwrap_or(JsValue::UNDEFINED))
}

fn last_error_code(client: &CartClient) -> Option<String> {
    get(&client.snapshot(), &["lastError", "code"]).as_string()
}

fn line_count(client: &CartClient) -> u32 {
    js_sys::Array::from(&get(&client.snapshot(), &["lines"])).length()
}

#[wasm_bindgen_test]
fn corrupt_data_starts_a_clean_cart_and_says_so() {
    for (key, junk) in [("c1", "{not json"), ("c2", r#"{"foo": 1}"#), ("c3", "[]"), ("c4", r#"{"format": 1, "owner": "guest"}"#)] {
        storage().set_item(key, junk).unwrap();
        let client = CartClient::new(options(key)).expect("no throw on corrupt data");
        assert_eq!(last_error_code(&client).as_deref(), Some("storage_corrupt"), "{junk}");
        assert_eq!(line_count(&client), 0);
        client.add("A".into(), 1.into(), JsValue::UNDEFINED).unwrap();
        let stored = storage().get_item(key).unwrap().unwrap();
        assert!(stored.contains("\"format\":2"), "a clean cart replaced the junk: {stored}");
    }
}

#[wasm_bindgen_test]
fn an_older_format_is_reported_as_outdated() {
    storage().set_item("old", r#"{"format": 0, "items": [{"id": "A", "qty": 2}]}"#).unwrap();
    let client = CartClient::new(options("old")).unwrap();
    assert_eq!(last_error_code(&client).as_deref(), Some("storage_outdated"));
    assert_eq!(line_count(&client), 0);
}

/// A client whose server cannot be reached, so its changes stay pending.
fn offline_options(key: &str) -> JsValue {
    let o = options(key);
    Reflect::set(&o, &"endpoint".into(), &"http://127.0.0.1:9".into()).unwrap();
    o
}

#[wasm_bindgen_test]
fn a_reload_loses_nothing() {
    let _ = storage().remove_item("reload");
    let first = CartClient::new(offline_options("reload")).unwrap();
    first.add("A".into(), 2.into(), JsValue::UNDEFINED).unwrap();
    first.add("B".into(), 1.into(), JsValue::UNDEFINED).unwrap();
    first.save_for_later("B".into()).unwrap();
    drop(first);
    let second = CartClient::new(offline_options("reload")).unwrap();
    let snap = second.snapshot();
    assert_eq!(get(&snap, &["itemCount"]).as_f64(), Some(2.0));
    assert_eq!(get(&snap, &["pendingOps"]).as_f64(), Some(3.0), "the pending ops survive too");
    assert_eq!(js_sys::Array::from(&get(&snap, &["saved"])).length(), 1);
    assert_eq!(last_error_code(&second), None);
}

#[wasm_bindgen_test]
fn a_full_quota_keeps_the_cart_working_in_memory() {
    let s = storage();
    let _ = s.remove_item("full");
    let client = CartClient::new(options("full")).unwrap();
    // Fill the origin's quota with junk.
    let chunk = "x".repeat(256 * 1024);
    let mut filled = Vec::new();
    for i in 0..200 {
        let k = format!("junk{i}");
        if s.set_item(&k, &chunk).is_err() {
            break;
        }
        filled.push(k);
    }
    let small = "y".repeat(1024);
    for i in 0..2000 {
        if s.set_item(&format!("pad{i}"), &small).is_err() {
            break;
        }
        filled.push(format!("pad{i}"));
    }
    let big_sku = |i: u32| format!("SKU-{i:0>60}");
    let mut full = false;
    let mut added = 0;
    for i in 0..150 {
        let snap = client.add(big_sku(i).into(), 1.into(), JsValue::UNDEFINED).expect("adding never throws for a full storage");
        added += 1;
        if get(&snap, &["lastError", "code"]).as_string().as_deref() == Some("storage_full") {
            full = true;
            // Keep going a little: changes made while full must not be lost either.
            if added > 3 {
                break;
            }
        }
    }
    assert!(full, "the quota was reached and reported");
    let lines_in_memory = line_count(&client);
    assert_eq!(lines_in_memory, added, "the cart keeps every change in memory");
    for k in &filled {
        s.remove_item(k).unwrap();
    }
    client.add("AFTER".into(), 1.into(), JsValue::UNDEFINED).unwrap();
    assert_eq!(last_error_code(&client), None, "saving again clears the error");
    let reopened = CartClient::new(options("full")).unwrap();
    assert_eq!(line_count(&reopened), lines_in_memory + 1, "everything reached storage once there was room");
}

#[wasm_bindgen_test]
fn a_listener_may_call_back_into_the_client() {
    let _ = storage().remove_item("reentrant");
    let client = std::rc::Rc::new(CartClient::new(options("reentrant")).unwrap());
    let seen = std::rc::Rc::new(std::cell::Cell::new(0.0));
    let (c, s) = (client.clone(), seen.clone());
    let listener = wasm_bindgen::closure::Closure::<dyn FnMut(JsValue)>::new(move |_snap: JsValue| {
        // Reading the state from inside a notification must work.
        s.set(get(&c.snapshot(), &["itemCount"]).as_f64().unwrap_or(-1.0));
    });
    let unsubscribe = client.subscribe(listener.as_ref().unchecked_ref::<js_sys::Function>().clone());
    client.add("A".into(), 2.into(), JsValue::UNDEFINED).unwrap();
    assert_eq!(seen.get(), 2.0);
    unsubscribe.unchecked_ref::<js_sys::Function>().call0(&JsValue::NULL).unwrap();
    client.add("A".into(), 1.into(), JsValue::UNDEFINED).unwrap();
    assert_eq!(seen.get(), 2.0, "unsubscribed");
}

#[wasm_bindgen_test]
fn bad_input_throws_a_typed_error_and_changes_nothing() {
    let _ = storage().remove_item("bad");
    let client = CartClient::new(options("bad")).unwrap();
    client.add("A".into(), 1.into(), JsValue::UNDEFINED).unwrap();
    for (sku, qty, code) in [
        ("A", JsValue::from(0), "invalid_quantity"),
        ("A", 1000.into(), "invalid_quantity"),
        ("A", 1.5.into(), "invalid_quantity"),
        ("", 1.into(), "invalid_sku"),
    ] {
        let err = client.add(sku.into(), qty, JsValue::UNDEFINED).expect_err("bad input throws");
        assert_eq!(get(&err, &["code"]).as_string().as_deref(), Some(code));
        assert_eq!(get(&err, &["name"]).as_string().as_deref(), Some("CartError"));
        assert!(err.is_instance_of::<js_sys::Error>());
    }
    let missing = client.set_quantity("NOPE".into(), 2.into()).expect_err("no such line");
    assert_eq!(get(&missing, &["code"]).as_string().as_deref(), Some("line_not_found"));
    assert_eq!(get(&client.snapshot(), &["itemCount"]).as_f64(), Some(1.0));
    assert_eq!(get(&client.snapshot(), &["pendingOps"]).as_f64(), Some(0.0), "a local-only cart queues nothing");
}

#[wasm_bindgen_test]
fn a_newer_format_is_left_untouched_and_the_cart_works_in_memory() {
    let newer = r#"{"format": 99, "written_by": "a newer page"}"#;
    storage().set_item("newer", newer).unwrap();
    let client = CartClient::new(options("newer")).expect("no throw on a newer format");
    assert_eq!(last_error_code(&client).as_deref(), Some("storage_newer"));
    client.add("A".into(), 2.into(), JsValue::UNDEFINED).unwrap();
    assert_eq!(line_count(&client), 1, "changes work in memory");
    assert_eq!(storage().get_item("newer").unwrap().as_deref(), Some(newer), "never overwritten");
}

#[wasm_bindgen_test]
fn a_cart_stored_by_the_previous_format_is_moved_over_with_its_queued_ops() {
    let v1 = r#"{"format":1,"owner":"guest","guest_token":"6vI_iEVPjirXwWS8bY4Vnas01qhgB6w7",
      "cart":{"format":1,"currency":"USD","version":2,"next_seq":1,"updated_at":"2026-11-28T14:09:32.260Z","accessed_at":"1970-01-01T00:00:00Z",
        "lines":[{"sku":"CAP-BLK","quantity":2,"added_at":"2026-11-28T14:09:32.141Z","seq":0}],"saved":[]},
      "annotations":{},
      "pending":[{"at":"2026-11-28T14:09:33.199Z","client_id":"66a71785-86fb-49d6-a264-5dece2ba35f7","op_id":"a5aac31d-c09e-4634-9040-1de2e0923fa5","quantity":1,"sent":true,"seq":2,"sku":"CAP-BLK","type":"add"}],
      "promotions":{"asked":[],"promotions":[]}}"#;
    storage().set_item("v1", v1).unwrap();
    let client = CartClient::new(offline_options("v1")).unwrap();
    let snap = client.snapshot();
    assert_eq!(last_error_code(&client), None);
    assert_eq!(get(&snap, &["itemCount"]).as_f64(), Some(3.0), "the confirmed cart and the queued op");
    assert_eq!(get(&snap, &["pendingOps"]).as_f64(), Some(1.0));
    assert_eq!(get(&snap, &["version"]).as_f64(), Some(2.0));
    let stored = storage().get_item("v1").unwrap().unwrap();
    assert!(stored.contains("\"format\":2") && stored.contains("6vI_iEVPjirXwWS8bY4Vnas01qhgB6w7"), "{stored}");
    let reopened = CartClient::new(offline_options("v1")).unwrap();
    assert_eq!(get(&reopened.snapshot(), &["itemCount"]).as_f64(), Some(3.0), "moved once, not twice");
}

async fn sleep(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        web_sys::window().unwrap().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms).unwrap();
    });
    wasm_bindgen_futures::JsFuture::from(p).await.unwrap();
}

#[wasm_bindgen_test]
async fn two_clients_of_one_cart_in_one_page_see_each_other_and_lose_nothing() {
    let _ = storage().remove_item("samepage");
    let a = CartClient::new(options("samepage")).unwrap();
    let b = CartClient::new(options("samepage")).unwrap();
    b.add("X".into(), 2.into(), JsValue::UNDEFINED).unwrap();
    a.add("Y".into(), 1.into(), JsValue::UNDEFINED).unwrap();
    // No `storage` event reaches a page for its own writes: the clients tell each other.
    sleep(400).await;
    for c in [&a, &b] {
        assert_eq!(get(&c.snapshot(), &["itemCount"]).as_f64(), Some(3.0));
    }
    drop(a);
    b.add("X".into(), 1.into(), JsValue::UNDEFINED).unwrap();
    sleep(400).await;
    let c = CartClient::new(options("samepage")).unwrap();
    assert_eq!(get(&c.snapshot(), &["itemCount"]).as_f64(), Some(4.0), "a client made later reads all of it");
}

#[wasm_bindgen_test]
fn an_unchanged_line_is_the_same_object_in_the_next_snapshot_and_an_old_snapshot_never_changes() {
    let _ = storage().remove_item("lines");
    let client = CartClient::new(options("lines")).unwrap();
    client.add("A".into(), 1.into(), JsValue::UNDEFINED).unwrap();
    client.add("B".into(), 1.into(), JsValue::UNDEFINED).unwrap();
    let before = client.snapshot();
    assert!(js_sys::Object::is(&before, &client.snapshot()), "the same object while nothing changed");
    let lines = |s: &JsValue| js_sys::Array::from(&get(s, &["lines"]));
    let (a1, b1) = (lines(&before).get(0), lines(&before).get(1));
    let after = client.set_quantity("B".into(), 5.into()).unwrap();
    assert!(js_sys::Object::is(&lines(&after).get(0), &a1), "line A did not change: the same object");
    assert!(!js_sys::Object::is(&lines(&after).get(1), &b1));
    assert_eq!(get(&lines(&after).get(1), &["quantity"]).as_f64(), Some(5.0));
    assert_eq!(get(&b1, &["quantity"]).as_f64(), Some(1.0), "the earlier snapshot still shows what it showed");
    assert!(js_sys::Object::is_frozen(a1.unchecked_ref::<js_sys::Object>()), "shared lines are frozen");
}

/// Runs `body` as the body of a function in the page and returns what it returns.
fn page(body: &str) -> JsValue {
    js_sys::Function::new_no_args(body).call0(&JsValue::NULL).unwrap()
}

#[wasm_bindgen_test]
async fn a_busy_local_cart_keeps_its_timer_armed_and_an_idle_one_arms_none() {
    let _ = storage().remove_item("ticking");
    let cart = CartClient::new(options("ticking")).unwrap();
    // Timers armed during this cart's calls, and 25 ms timers (its fold delay) armed between
    // them. Other tests' clients live on in this page; none of them changes, so none arms a
    // 25 ms timer.
    page(
        "globalThis.__inCall = false; globalThis.__inCalls = 0; globalThis.__between = 0; \
         const o = globalThis.setTimeout; \
         globalThis.setTimeout = function (f, ms, ...a) { \
           if (globalThis.__inCall) globalThis.__inCalls++; else if (ms === 25) globalThis.__between++; \
           return o.call(this, f, ms, ...a); }; \
         globalThis.__restore = () => { globalThis.setTimeout = o; };",
    );
    // Busy: a change every 10 ms for 400 ms, folded as they come. At most the first change arms
    // the timer; the timer keeps itself armed while changes keep coming (a cold setTimeout was
    // the costliest step of the first change after each fold).
    for i in 0..40 {
        page("globalThis.__inCall = true;");
        cart.add(format!("S{}", i % 7).into(), 1.into(), JsValue::UNDEFINED).unwrap();
        page("globalThis.__inCall = false;");
        sleep(10).await;
    }
    sleep(150).await;
    // The first change may arm it, or the lock that makes this client the one that folds (it
    // comes a moment later) does.
    let armed = page("return globalThis.__inCalls").as_f64().unwrap();
    assert!(armed <= 1.0, "{armed} changes armed a timer");
    assert_eq!(get(&cart.snapshot(), &["pendingOps"]).as_f64(), Some(0.0), "every change was folded");
    assert_eq!(get(&cart.snapshot(), &["itemCount"]).as_f64(), Some(40.0));
    // Idle: the timer stopped, and nothing arms it again.
    page("globalThis.__between = 0;");
    sleep(300).await;
    assert_eq!(page("globalThis.__restore(); return globalThis.__between").as_f64(), Some(0.0), "an idle cart arms no timer");
}

/// A call under way keeps its client: freed by the page right after `sync()` and `checkout()`,
/// the sync still answers its snapshot and the checkout still ends in a typed error (its server
/// cannot be reached), not a settlement with nothing or a `TypeError`.
#[wasm_bindgen_test]
async fn calls_under_way_settle_after_the_page_frees_the_client() {
    let _ = storage().remove_item("freed");
    let local = CartClient::new(options("freed")).unwrap();
    local.add("A".into(), 2.into(), JsValue::UNDEFINED).unwrap();
    let sync = local.sync();
    drop(local);
    let snap = wasm_bindgen_futures::JsFuture::from(sync).await.expect("the sync answers");
    assert_eq!(get(&snap, &["itemCount"]).as_f64(), Some(2.0));

    let _ = storage().remove_item("freed-synced");
    let synced = CartClient::new(offline_options("freed-synced")).unwrap();
    synced.add("B".into(), 1.into(), JsValue::UNDEFINED).unwrap();
    let checkout = synced.checkout(JsValue::UNDEFINED);
    drop(synced);
    let error = wasm_bindgen_futures::JsFuture::from(checkout).await.expect_err("nothing to check out against");
    assert_eq!(get(&error, &["name"]).as_string().as_deref(), Some("CartError"));
    assert_eq!(get(&error, &["code"]).as_string().as_deref(), Some("network_error"));
}
