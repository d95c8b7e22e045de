//! The draw as the room runs it: who an entrant is in the public record, and where a
//! registration or a receipt stands before and after the seal.
//!
//! Registrations before `draw_at` enter the draw and hold an arrival index until the
//! seal; from the seal they hold the position the permutation gives them. Whoever comes
//! later queues behind in arrival order. A receipt issued before `draw_at` holds an
//! arrival, one issued from then a position: the room hands out positions only once
//! sealed, and it seals only from `draw_at`.

use super::chain::global_index;
use super::permute::Permutation;
use super::schedule;
use super::seal::{SealRecord, VerifyError};
use crate::crypto::sha256_hex;
use crate::ids::{EventId, UserId};
use crate::Millis;

const ENTRANT_DOMAIN: &str = "flashgate room entrant v1\n";

/// The name an entrant has in the published entries: a hash of the event and the user,
/// so the record shows no user ids while each shopper can find their own entry.
///
/// ```
/// use flashgate_core::ids::{EventId, UserId};
/// use flashgate_core::room::draw::entrant;
/// let event = EventId::parse("phone").expect("a slug");
/// let a = entrant(&event, &UserId::parse("alice").expect("an id"));
/// assert_eq!(a.as_str().len(), 64);
/// assert_ne!(a, entrant(&event, &UserId::parse("bob").expect("an id")));
/// ```
pub fn entrant(event: &EventId, user: &UserId) -> UserId {
    let hex = sha256_hex(format!("{ENTRANT_DOMAIN}{event}\n{user}").as_bytes());
    UserId::parse(&hex).expect("64 hex digits are a valid user id")
}

/// A sealed draw, ready to place its entrants.
#[derive(Debug, Clone)]
pub struct Drawn {
    permutation: Permutation,
}

impl Drawn {
    /// The draw of a sealed record.
    pub fn of(record: &SealRecord) -> Result<Self, VerifyError> {
        Ok(Self {
            permutation: Permutation::new(&record.seed()?, record.entrants),
        })
    }

    /// The position of the entrant at `global_index` (see
    /// [`super::chain::global_index`]), from 1.
    pub fn position(&self, global_index: u64) -> Option<u64> {
        schedule::position(&self.permutation, global_index)
    }

    /// The position of entry `index` of `shard`, the shards holding `shard_sizes`
    /// entries (see [`super::chain::global_index`]).
    pub fn position_in(&self, shard_sizes: &[u64], shard: u32, index: u64) -> Option<u64> {
        self.position(global_index(shard_sizes, shard, index)?)
    }

    /// How many entered the draw.
    pub fn entrants(&self) -> u64 {
        self.permutation.len()
    }

    /// The position of the `arrival`-th (from 0) shopper after the draw's window.
    pub fn late_position(&self, arrival: u64) -> u64 {
        schedule::late_position(self.entrants(), arrival)
    }
}

/// Whether a receipt issued at `issued_at` holds a position (else an arrival, to be
/// exchanged for a position once the draw at `draw_at` is sealed).
///
/// ```
/// use flashgate_core::room::draw::holds_position;
/// assert!(!holds_position(999, 1_000));
/// assert!(holds_position(1_000, 1_000));
/// ```
pub fn holds_position(issued_at: Millis, draw_at: Millis) -> bool {
    issued_at >= draw_at
}

/// Whether the room seals its draw now: from `draw_at`, once.
pub fn seals_now(sealed: bool, draw_at: Millis, now: Millis) -> bool {
    !sealed && now >= draw_at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::chain::ShardChain;
    use crate::room::seal::verify_record;

    fn event() -> EventId {
        EventId::parse("phone").expect("valid")
    }

    #[test]
    fn entrant_names_are_frozen() {
        let e = entrant(&event(), &UserId::parse("u1").expect("valid"));
        // A published record is checked years later: the name must never change.
        assert_eq!(
            e.as_str(),
            sha256_hex(b"flashgate room entrant v1\nphone\nu1")
        );
    }

    #[test]
    fn the_room_places_entrants_as_the_verifier_does() {
        let mut chain = ShardChain::new(&event(), 0);
        let entries: Vec<_> = (0..50)
            .map(|i| {
                let user = UserId::parse(&format!("u{i}")).expect("valid");
                chain.register(entrant(&event(), &user), "fp".into(), 1_000 + i)
            })
            .collect();
        let record = SealRecord::seal(&event(), &[chain], &[9u8; 32], None).expect("sealed");
        let verified = verify_record(&record, &[entries]).expect("checks out");
        let drawn = Drawn::of(&record).expect("a valid seed");
        for (i, p) in verified.iter().enumerate() {
            assert_eq!(drawn.position(i as u64), Some(*p));
        }
        assert_eq!(drawn.position(50), None);
        assert_eq!(drawn.position_in(&[50], 0, 7), drawn.position(7));
        assert_eq!(drawn.late_position(0), 51);
    }

    #[test]
    fn a_room_seals_once_from_draw_at() {
        assert!(!seals_now(false, 1_000, 999));
        assert!(seals_now(false, 1_000, 1_000));
        assert!(!seals_now(true, 1_000, 5_000));
    }
}
