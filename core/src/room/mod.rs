//! The edge room: a waiting room per event, as pure rules.
//!
//! The worker and its room storage keep the state and the clock; these functions say
//! what the room does with them, step by step through an event:
//!
//! 1. Settings: [`settings::RoomSettings`], validated once, and the room's
//!    [`settings::phase`]: `Closed` until `prequeue_ms` before the start, `Registering`
//!    until `fair_start_ms` after it, `Sealing` until the draw is sealed, then `Open`, and
//!    `Ended` from the event's end.
//! 2. Before registration opens, the room publishes [`seal::commitment`]`(seed)`; the
//!    seed is random bytes from the caller (core draws no randomness).
//! 3. Registering: each shard appends the arrival to its [`chain::ShardChain`] and hands
//!    the shopper a signed [`receipt::Receipt`] of their arrival.
//! 4. At the draw: [`seal::SealRecord::seal`] publishes the roots and reveals the seed;
//!    [`schedule::position`] gives each entrant's place, the keyed permutation of
//!    [`permute`] applied to the global index ([`chain::global_index`]). Later arrivals
//!    queue behind ([`schedule::late_position`]), placed by their shards from blocks of
//!    positions ([`late`]). Anyone can check the record with
//!    [`seal::verify_record`].
//! 5. Open: isolates [`pacing::lease`] small batches of positions, never faster than the
//!    rate nor past `unsold × margin` live admissions ([`pacing::admit_budget`]); the
//!    room publishes a [`schedule::Schedule`], from which each page computes its
//!    [`schedule::estimated_turn`], and lets in a receipt whose position is
//!    [`schedule::admitted`]. Its purchase spends the receipt ([`spend`]): used once.
//!
//! The draw's fairness (a winner's chance does not depend on when they registered in the
//! window) is measured by the statistical tests of `stats.rs`.

pub mod chain;
pub mod draw;
pub mod forward;
pub mod late;
pub mod pacing;
pub mod permute;
pub mod receipt;
pub mod schedule;
pub mod seal;
pub mod settings;
pub mod spend;
#[cfg(test)]
mod stats;
