//! # flashgate-core
//!
//! The rules and wire types that the edge worker (wasm32) and the origin (native) share.
//! Nothing here does I/O, reads a clock or awaits: time comes in as unix milliseconds,
//! secrets as byte slices, so every rule is tested with plain `cargo test`.
//!
//! ## Layout
//!
//! - [`ids`]: `UserId`, `EventId`, `OrderId`, built only through `parse`.
//! - [`crypto`]: HMAC-SHA256 and base64url helpers used by the three signed things below.
//! - [`keyring`]: a secret and the one it replaces: sign with the current, accept either.
//! - [`jwt`]: HS256 shopper tokens (verify at the edge, issue for demo and load-test users).
//! - [`stock_buckets`]: a hot event's stock split over slots: a user's home stock bucket,
//!   each stock bucket's units, and the purchase's steps over them (mark, claim, spill,
//!   settle), one user one order across buckets.
//! - [`sign`]: the edge → origin request signature.
//! - [`ticket`]: admission tickets issued by the edge and required on purchase.
//! - [`gate`]: an event's phase and state from its window, its stock and the time.
//! - [`bucket`]: a token bucket with injected time (edge global limiter).
//! - [`bot`]: the edge's bot-scoring rules, allow-list, burst counters and Turnstile check.
//! - [`fence`]: unit numbers: which unit a reservation holds, why the database refuses an
//!   order and whether its unit goes back, Redis's units rebuilt from the database.
//! - [`bounded`]: a capped map that evicts stale, then least recently used, entries.
//! - [`admission`]: the edge's admission decisions (screen, purchase, ticket) in order.
//! - [`isolate`]: what an edge isolate remembers (event windows, unknown ids, sold-out
//!   marks, buyers), bounded.
//! - [`report`]: the fairness report of a sale: wins by arrival decile, the χ² test.
//! - [`reservation`]: the origin's purchase decision in order, and a reservation's answer.
//! - [`room`]: the waiting room per event: settings, phases, the draw, its public record,
//!   positions, pacing and receipts.
//! - [`wire`]: JSON bodies of the public contract and the answer of each outcome.
#![deny(unsafe_code)]

pub mod admission;
pub mod bot;
pub mod bounded;
pub mod bucket;
pub mod buyers;
pub mod crypto;
pub mod fence;
pub mod gate;
pub mod ids;
pub mod isolate;
pub mod jwt;
pub mod keyring;
pub mod report;
pub mod reservation;
pub mod room;
pub mod sign;
pub mod stock_buckets;
pub mod ticket;
pub mod wire;

/// Unix time in milliseconds: the one unit of time in every rule.
pub type Millis = i64;
