//! The server's protocols called directly, without HTTP: the idempotency keys of checkout, and the
//! stock holds' one way to end, against a real PostgreSQL and the embedded SQLite.

use shared::Timestamp;
use std::sync::Arc;
use std::time::Duration;
use sync_server::durable::Durable;
use sync_server::idempotency::{Begin, Idempotency, IdempotencyError, Saved};

/// A scratch directory for the SQLite file, removed when the test is done with it (or panics).
struct Scratch(Option<std::path::PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn databases() -> Vec<(&'static str, Durable, Scratch)> {
    let pg = Durable::connect(&cartsync_tests::postgres().create_database().await).await.expect("PostgreSQL");
    let dir = std::env::temp_dir().join(format!("cartsync-proto-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let lite = Durable::connect(&format!("sqlite://{}/p.db", dir.display())).await.expect("SQLite");
    vec![("postgres", pg, Scratch(None)), ("sqlite", lite, Scratch(Some(dir)))]
}

fn now() -> Timestamp {
    sync_server::clock::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_requests_with_one_key_run_once_and_all_get_the_first_answer() {
    for (name, db, dir) in databases().await {
        let keys = Arc::new(Idempotency::new(db.clone(), Duration::from_secs(10)));
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (keys, runs) = (keys.clone(), runs.clone());
                tokio::spawn(async move {
                    match keys.begin("owner-1", "k", "hash-a", now).await.expect("no store failure") {
                        Begin::Run(claim) => {
                            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            // The work takes a while; the others wait for its answer.
                            tokio::time::sleep(Duration::from_millis(150)).await;
                            let answer = Saved { status: 201, body: "{\"order\":1}".into() };
                            claim.save(&answer).await.unwrap();
                            answer
                        }
                        Begin::Replay(saved) => saved,
                    }
                })
            })
            .collect();
        let answers: Vec<Saved> = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1, "{name}: one request did the work");
        assert!(answers.iter().all(|a| *a == Saved { status: 201, body: "{\"order\":1}".into() }), "{name}: {answers:?}");

        let reused = keys.begin("owner-1", "k", "hash-b", now).await;
        assert!(matches!(reused, Err(IdempotencyError::Reused)), "{name}: another body under the key");
        let other_owner = keys.begin("owner-2", "k", "hash-b", now).await.unwrap();
        assert!(matches!(other_owner, Begin::Run(_)), "{name}: keys are per owner");
        drop(dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_given_back_runs_afresh_and_a_running_one_answers_in_progress() {
    for (name, db, dir) in databases().await {
        let patient = Idempotency::new(db.clone(), Duration::from_millis(100));
        let Begin::Run(first) = patient.begin("o", "k", "h", now).await.unwrap() else { panic!("{name}: a new key runs") };
        let waiting = patient.begin("o", "k", "h", now).await;
        assert!(matches!(waiting, Err(IdempotencyError::InProgress)), "{name}: still running after the wait");
        first.abandon().await.unwrap();
        let Begin::Run(second) = patient.begin("o", "k", "h", now).await.unwrap() else { panic!("{name}: given back, runs again") };
        second.save(&Saved { status: 409, body: "{}".into() }).await.unwrap();
        let Begin::Replay(saved) = patient.begin("o", "k", "h", now).await.unwrap() else { panic!("{name}: a refusal is kept too") };
        assert_eq!(saved.status, 409);
        // A claim whose server died (a minute old and unfinished) is taken over.
        let Begin::Run(_lost) = patient.begin("o", "dead", "h", || Timestamp::from_millis(now().millis() - 120_000)).await.unwrap() else {
            panic!("{name}: a new key runs")
        };
        assert!(matches!(patient.begin("o", "dead", "h", now).await.unwrap(), Begin::Run(_)), "{name}: the stale claim is taken over");
        assert_eq!(patient.sweep(Timestamp::from_millis(now().millis() + 1)).await.unwrap(), 2, "{name}: old keys are forgotten");
        drop(dir);
    }
}
