//! # flashgate-origin
//!
//! The origin behind the edge worker: it turns admitted purchase attempts into
//! reservations in Redis, relays them to Kafka, and (in a separate process) writes them to
//! MariaDB as orders. One binary, `flashgate`, with subcommands (`serve`, `consume`,
//! `users`, `migrate`, `event`, `reconcile`).
//!
//! ## Layout
//!
//! - [`config`]: typed, layered settings (defaults < file < `FLASHGATE_*`).
//! - [`startup`]: builds the app from settings and binds it (`Application`); the router.
//! - [`api`]: shopper handlers behind the edge signature, admin and health handlers.
//! - [`error`]: the HTTP error type; every answer comes from `flashgate_core::wire`.
//! - [`batch`]: coalesces concurrent purchase attempts into few reserve calls.
//! - [`store`]: Redis keys and the Lua scripts (`lua/`) that reserve, confirm and compensate.
//! - [`relay`]: the outbox relay (Redis stream → Kafka), inside `serve`.
//! - [`consumer`]: the order consumer (Kafka → MariaDB), `flashgate consume`.
//! - [`kafka`]: client configs, the orders topic and message.
//! - [`protect`]: circuit breakers and the adaptive concurrency limit.
//! - [`reconcile`]: `flashgate reconcile`, Redis against the orders table.
//! - [`users`]: the demo/load-test users CSV.
//! - [`clock`], [`telemetry`]: injected time; logs, metrics, the consumer's `/metrics`.
#![deny(unsafe_code)]

pub mod api;
pub mod batch;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod error;
pub mod kafka;
pub mod protect;
pub mod reconcile;
pub mod relay;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod users;
