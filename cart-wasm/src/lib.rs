//! The browser cart of cartsync.
//!
//! `engine` is the client's state machine in plain Rust (it runs natively in tests); `storage`
//! is the small storage trait it persists through; `browser` (WebAssembly only) is the thin
//! `CartClient` binding that owns localStorage (its requests, locks, timers, events and pauses
//! are `js/driver.js`, calling back its synchronous steps) and delegates every cart decision to
//! `engine` and, through it, to `shared`.

#[cfg(all(target_arch = "wasm32", feature = "client"))]
mod browser;
#[cfg(all(target_arch = "wasm32", feature = "client"))]
pub use browser::CartClient;
pub mod engine;
#[cfg(target_arch = "wasm32")]
mod js;
pub mod kernel;
#[cfg(all(target_arch = "wasm32", feature = "kernel"))]
pub mod kernel_js;
pub mod render;
pub mod storage;

pub use shared;

/// Talc instead of the standard dlmalloc: the same job for about 5 KB less of the module.
/// The page is single-threaded (no `atomics` target feature), which this allocator requires.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
