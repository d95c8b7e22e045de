//! The edge room: a waiting room per event, as pure rules.
//!
//! - [`settings`]: the room's settings and its phase.
//! - [`permute`]: the draw, a keyed permutation of the entry indices `0..n`.
//! - [`schedule`]: positions, the public schedule and each position's turn.
//! - [`pacing`]: how many more positions to admit, and when.
//! - [`seal`]: the commitment, the shard hash chains and the draw's public record.
//! - [`receipt`]: the waiting shopper's signed position.
pub mod pacing;
pub mod permute;
pub mod receipt;
pub mod schedule;
pub mod seal;
pub mod settings;
