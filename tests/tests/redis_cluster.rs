//! The same server on a three-node Redis Cluster: a configuration change, not another code path.
//! A guest cart and a user cart hash to different slots, so the merge cannot be one script.

use cartsync_tests::app::{As, list};
use cartsync_tests::{Mode, TestApp, durable_rows, guest_token, redis_cluster};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carts_merges_and_restores_work_on_a_redis_cluster() {
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
