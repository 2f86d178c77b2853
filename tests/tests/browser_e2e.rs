//! Runs the browser end-to-end suite (`tests/e2e/*.test.mjs`, Node's test runner driving Debian's
//! Chromium through playwright-core) against a real sync-server binary, Redis and PostgreSQL.
//!
//! It builds what it needs when missing: the sync-server binary, the npm package (through
//! `scripts/build-npm.sh`) and the npm tools. `scripts/test.sh` installs Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository root").to_path_buf()
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storefront_and_the_package_work_in_chromium() {
    let root = root();
    if !root.join("www/pkg/web.js").exists() {
        run(Command::new("bash").arg(root.join("scripts/build-npm.sh")), "building the npm package");
    }
    if !root.join("tools/node_modules/playwright-core").exists() {
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(root.join("tools")), "installing the npm tools");
    }
    run(Command::new(env!("CARGO")).args(["build", "-q", "-p", "sync-server"]).current_dir(&root), "building sync-server");
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug/sync-server");
    let tarball = std::fs::read_dir(root.join("cart-wasm"))
        .expect("cart-wasm exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.extension().is_some_and(|x| x == "tgz") && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("cartsync-cart-"))
        })
        .expect("scripts/build-npm.sh packed the package");
    let react_tarball = root.join("cart-wasm/cartsync-react-0.1.0.tgz");
    assert!(react_tarball.exists(), "scripts/build-npm.sh packed the React binding");

    let database = cartsync_tests::postgres().create_database().await;
    let out = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .arg(root.join("tests/e2e/storefront.test.mjs"))
        .arg(root.join("tests/e2e/package.test.mjs"))
        .arg(root.join("tests/e2e/tabs.test.mjs"))
        .arg(root.join("tests/e2e/react.test.mjs"))
        .arg(root.join("tests/e2e/shopper.test.mjs"))
        .env("CARTSYNC_E2E_SERVER_BIN", &bin)
        .env("CARTSYNC_E2E_REDIS_URL", &cartsync_tests::redis().url)
        .env("CARTSYNC_E2E_DATABASE_URL", &database)
        .env("CARTSYNC_E2E_WWW", root.join("www"))
        .env("CARTSYNC_E2E_PKG", root.join("cart-wasm/pkg"))
        .env("CARTSYNC_E2E_TARBALL", &tarball)
        .env("CARTSYNC_E2E_REACT_TARBALL", &react_tarball)
        .env("CARTSYNC_E2E_EXAMPLES", root.join("examples"))
        .env("CARTSYNC_E2E_TOOLS", root.join("tools"))
        .env("CARTSYNC_E2E_ARTIFACTS", root.join("tests/artifacts"))
        .output()
        .expect("node runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "the browser suite failed:\n{text}");
    assert!(text.contains("ℹ fail 0") && !text.contains("ℹ pass 0"), "the browser suite ran its tests:\n{text}");
    assert!(!text.contains("PAGEERROR"), "a page had an uncaught error or an unhandled rejection:\n{text}");
    assert!(root.join("tests/artifacts/storefront.png").exists(), "the screenshot was saved");
    assert!(root.join("tests/artifacts/shopper-7-paid.png").exists(), "the shopper walk-through's screenshots were saved");
}
