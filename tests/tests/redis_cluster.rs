//! The same server on a three-node Redis Cluster: a configuration change, not another code path.
//! A guest cart and a user cart hash to different slots, so the merge cannot be one script.

use cartsync_tests::app::{As, list};
use cartsync_tests::{Mode, TestApp, durable_rows, guest_token, redis_cluster};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

/// Both tests flush the cluster: they take turns, so one's flush cannot wipe the other's carts.
static FLUSH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carts_merges_and_restores_work_on_a_redis_cluster() {
    let _turn = FLUSH.lock().await;
    let app = TestApp::spawn(Mode::RedisCluster).await;

    // Cart writes and exactly-once ops.
    let g = As::Guest(guest_token());
    let ops =
        json!([{"op_id": "c-1", "type": "add", "sku": "A", "quantity": 2}, {"op_id": "c-2", "type": "add", "sku": "B", "quantity": 1}]);
    assert_eq!(app.ops(&g, ops.clone()).await.lines(), vec![("A".into(), 2), ("B".into(), 1)]);
    assert_eq!(app.ops(&g, ops).await.body["results"][0]["status"], "duplicate");

    // A hundred concurrent merges across slots merge once.
    let user = format!("cluster-user-{}", uuid::Uuid::new_v4());
    let token = match &g {
        As::Guest(t) => t.clone(),
        _ => unreachable!(),
    };
    app.add(&As::User(user.clone()), "A", 1).await;
    app.call(Method::POST, "/v1/cart/items/B/save-for-later", &g, None).await;
    let answers = futures::future::join_all((0..100).map(|_| app.merge(&user, &token))).await;
    assert!(answers.iter().all(|a| a.status == StatusCode::OK));
    assert_eq!(answers.iter().filter(|a| a.body["merged"] == true).count(), 1);
    let cart = app.get_cart(&As::User(user.clone())).await;
    assert_eq!(cart.lines(), vec![("A".into(), 3)]);
    assert_eq!(list(&cart.body["saved"]), vec![("B".into(), 1)]);
    let late = app.add(&g, "C", 1).await;
    assert_eq!((late.status.as_u16(), late.code()), (409, "cart_merged"));

    // The write-behind reaches PostgreSQL, and a flushed cluster restores from it.
    let version = cart.body["version"].as_i64().unwrap();
    let mut stored = false;
    for _ in 0..200 {
        if durable_rows(&app.settings.database_url).await.iter().any(|(u, v)| u == &user && *v == version) {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(stored, "the user cart was written behind");
    redis_cluster().flush_all();
    let restored = app.get_cart(&As::User(user.clone())).await;
    assert_eq!(restored.lines(), vec![("A".into(), 3)]);
    assert_eq!(restored.body["version"], version);
}

/// Scale-out: two server instances on a three-node Redis Cluster and one PostgreSQL, every
/// request going to the next instance in turn, through the races the seeds warn about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_a_cluster_serve_one_consistent_cart() {
    let _turn = FLUSH.lock().await;
    let app = TestApp::spawn_pair(Mode::RedisCluster).await;
    app.product("PAIR-1", 500, 3).await;

    // Exactly-once ops whichever instance gets them.
    let g = As::Guest(guest_token());
    let op = json!([{"op_id": "pair-1", "type": "add", "sku": "PAIR-1", "quantity": 1}]);
    let answers: Vec<_> = futures::future::join_all((0..10).map(|_| app.ops(&g, op.clone()))).await;
    assert_eq!(answers.iter().filter(|a| a.body["results"][0]["status"] == "applied").count(), 1);
    assert_eq!(app.get_cart(&g).await.lines(), vec![("PAIR-1".into(), 1)]);

    // Concurrent merges across instances and slots merge once; a second user is refused.
    let token = match &g {
        As::Guest(t) => t.clone(),
        _ => unreachable!(),
    };
    let (user, other) = (format!("pair-{}", uuid::Uuid::new_v4()), format!("pair-other-{}", uuid::Uuid::new_v4()));
    let merges = futures::future::join_all((0..40).map(|_| app.merge(&user, &token))).await;
    assert!(merges.iter().all(|a| a.status == StatusCode::OK), "{:?}", merges.iter().map(|a| a.status).collect::<Vec<_>>());
    assert_eq!(merges.iter().filter(|a| a.body["merged"] == true).count(), 1);
    let refused = app.merge(&other, &token).await;
    assert_eq!(refused.code(), "cart_merged", "{:?} {:?}", refused.status, refused.body);
    let u = As::User(user.clone());
    assert_eq!(app.get_cart(&u).await.lines(), vec![("PAIR-1".into(), 1)]);

    // A double-clicked checkout sent to both instances makes one order.
    let clicks = futures::future::join_all((0..6).map(|_| app.checkout(&u, "pair-key", json!({})))).await;
    let created: Vec<_> = clicks.iter().filter(|a| a.status == StatusCode::CREATED).collect();
    assert!(!created.is_empty(), "{:?}", clicks.iter().map(|a| (a.status, a.body.clone())).collect::<Vec<_>>());
    let id = created[0].body["order"]["id"].clone();
    assert!(created.iter().all(|a| a.body["order"]["id"] == id), "one order for one key");
    assert!(clicks.iter().all(|a| a.status == StatusCode::CREATED || a.code() == "request_in_progress"));

    // The last two units, five buyers on two instances: exactly two get them.
    let buyers: Vec<As> = (0..5).map(|_| As::Guest(guest_token())).collect();
    for b in &buyers {
        assert_eq!(app.add(b, "PAIR-1", 1).await.status, StatusCode::OK);
    }
    let race = futures::future::join_all(buyers.iter().enumerate().map(|(i, b)| app.checkout(b, format!("buy-{i}"), json!({})))).await;
    let outcomes: Vec<_> = race.iter().map(|a| (a.status.as_u16(), a.code().to_owned())).collect();
    assert_eq!(race.iter().filter(|a| a.status == StatusCode::CREATED).count(), 2, "{outcomes:?}");
    assert_eq!(
        race.iter().filter(|a| a.code() == "out_of_stock").count(),
        3,
        "{outcomes:?} {:?}",
        race.iter().map(|a| &a.body).collect::<Vec<_>>()
    );
    assert_eq!(app.admin_product("PAIR-1").await["reserved"], json!(3));

    // Paid through whichever instance: the lines leave the user's cart.
    let order = created[0].body["order"].clone();
    assert_eq!(app.pay(&order, "succeeded", "pay-pair").await.status, StatusCode::OK);
    assert!(app.get_cart(&u).await.lines().is_empty());

    // Written behind by either instance, restored by either after the cluster is flushed.
    app.add(&u, "PAIR-2", 4).await;
    let version = app.get_cart(&u).await.body["version"].as_i64().unwrap();
    cartsync_tests::wait_for_durable_version(&app.settings.database_url, &user, version).await;
    redis_cluster().flush_all();
    for _ in 0..4 {
        let restored = app.get_cart(&u).await;
        assert_eq!(restored.lines(), vec![("PAIR-2".into(), 4)]);
        assert_eq!(restored.body["version"], version);
    }
    let _ = app.stop().await;
}
