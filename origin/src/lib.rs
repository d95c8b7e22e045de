//! # flashgate-origin
//!
//! The origin behind the edge worker: it turns admitted purchase attempts into
//! reservations in Redis, relays them to Kafka, and (in a separate process) writes them to
//! MariaDB as orders. One binary, `flashgate`, with subcommands (`serve`, `consume`,
//! `migrate`, `event`, `reconcile`, `users`).
//!
//! ## Layout
//!
//! Arrows run one way: `cmd → serve | consume → redis, kafka, db → flashgate_core`;
//! `serve` and `consume` never import each other.
//!
//! - [`cmd`]: one module per subcommand, each with its `run`.
//! - [`serve`]: the API process: application, state, router, handlers, protections, relay.
//! - [`consume`]: the consumer process: read, write, settle, lag, stalls, retry.
//! - [`redis`]: the `Store` (over one Redis or a Redis Cluster): keys, the Lua scripts
//!   (`redis/lua/`), replicas and strict mode, repair, clock sync, durability checks.
//! - [`kafka`]: client configs, the orders topic and message.
//! - [`db`]: MariaDB's pool and migrations.
//! - [`config`]: typed, layered settings (defaults < file < `FLASHGATE_*`).
//! - [`telemetry`]: logs, metrics, the consumer's own `/healthz` and `/metrics`.
//! - [`clock`]: injected time; [`shutdown`]: one stop signal for a process's tasks;
//!   `locks`: locks that survive a panic elsewhere.
#![deny(unsafe_code)]

pub mod clock;
pub mod cmd;
pub mod config;
pub mod consume;
pub mod db;
pub mod kafka;
mod locks;
pub mod redis;
pub mod serve;
pub mod shutdown;
pub mod telemetry;
