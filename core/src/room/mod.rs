//! The edge room: a waiting room per event, as pure rules.
//!
//! - [`permute`]: the draw, a keyed permutation of the entry indices `0..n`.
pub mod permute;
