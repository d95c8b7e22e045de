//! The origin's purchase decision, in the order the origin applies it, and the answer of
//! a reservation's verdict.
//!
//! The origin reads the request and looks things up (the event, its sold-out memo, its
//! limiters, Redis); these functions, pure and clock-free, say what to answer or that the
//! purchase may go on. Answers that cost nothing come first, so a sold-out storm gets 409
//! without spending a token, and a limiter is asked only for purchases that passed the rest.
//!
//! - [`window`]: 404 unknown event, 425 before `starts_at`, 410 from `ends_at`; then
//!   [`not_paused`]: 503 `paused` while an operator has paused the sale.
//! - [`remembered`]: while the origin remembers a sold-out: 200 with the buyer's own order,
//!   else 409.
//! - [`limits`]: 429 from the process's purchase bucket, 503 while the outbox is full
//!   ([`Held::OutboxFull`]), 429 from the adaptive concurrency limit; else a permit to
//!   reserve.
//! - [`answer`]: the reservation's verdict as the contract's answer.

use crate::admission::{live, Window};
use crate::ids::OrderId;
use crate::wire::Outcome;
use crate::Millis;

/// What the reserve script decided for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Stock reserved under this new order.
    Reserved(OrderId),
    /// Stock reserved under this order (new, or the user's held one), but no Redis
    /// replica acknowledged it in time (strict mode): answered 503 busy, as a failover
    /// could lose it. It stands on the master (a retry, once a replica holds it, gets it
    /// back as already purchased) unless a failover loses it.
    Unreplicated(OrderId),
    /// The user already holds this order.
    AlreadyPurchased(String),
    /// No stock left; the version of the event's buyers (see the origin's `reserve.lua`).
    SoldOut(String),
    /// The per-user window is full; retry after this many milliseconds.
    RateLimited(u64),
    /// The event has no stock key.
    NoEvent,
    /// This exact signed request was already seen.
    Replayed,
}

/// Why a purchase that passed the window and the memo is not reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The process's purchase bucket is empty; a token comes in this many seconds.
    Bucket {
        /// `Retry-After`, at least 1.
        retry_after_secs: u64,
    },
    /// Reservations waiting for Kafka reached `max_outbox`: the origin answers 503 busy
    /// (a dependency is away) rather than let Redis's memory grow.
    OutboxFull,
    /// The adaptive concurrency limit is reached.
    Adaptive,
}

impl Held {
    /// The contract's answer.
    ///
    /// ```
    /// use flashgate_core::reservation::Held;
    /// use flashgate_core::wire::Outcome;
    /// assert_eq!(Held::Adaptive.outcome(), Outcome::RateLimited { retry_after_secs: 1 });
    /// ```
    pub fn outcome(self) -> Outcome {
        match self {
            Held::Bucket { retry_after_secs } => Outcome::RateLimited {
                retry_after_secs: retry_after_secs.max(1),
            },
            Held::OutboxFull => Outcome::Busy {
                retry_after_secs: 1,
            },
            Held::Adaptive => Outcome::RateLimited {
                retry_after_secs: 1,
            },
        }
    }
}

/// The event's window at `now`: `Ok` while the sale is live.
///
/// ```
/// use flashgate_core::admission::Window;
/// use flashgate_core::reservation::window;
/// use flashgate_core::wire::Outcome;
/// let w = Window { starts_at: 1_000, ends_at: 2_000 };
/// assert!(window(Some(w), 1_500).is_ok());
/// assert_eq!(window(Some(w), 2_000), Err(Outcome::Ended));
/// assert_eq!(window(None, 1_500), Err(Outcome::EventNotFound));
/// ```
pub fn window(window: Option<Window>, now: Millis) -> Result<(), Outcome> {
    live(window, now).map(|_| ())
}

/// A paused sale answers 503 `paused` (with `Retry-After`) and reserves nothing.
///
/// ```
/// use flashgate_core::reservation::not_paused;
/// use flashgate_core::wire::Outcome;
/// assert_eq!(not_paused(false), Ok(()));
/// assert_eq!(not_paused(true), Err(Outcome::Paused));
/// ```
pub fn not_paused(paused: bool) -> Result<(), Outcome> {
    if paused {
        Err(Outcome::Paused)
    } else {
        Ok(())
    }
}

/// The answer while the origin remembers the event sold out: the buyer's own order
/// (`buyers_order`) if they hold one, else sold out.
///
/// ```
/// use flashgate_core::reservation::remembered;
/// use flashgate_core::wire::Outcome;
/// assert_eq!(remembered(None), Outcome::SoldOut);
/// assert_eq!(remembered(Some("o1".into())), Outcome::AlreadyPurchased { order_id: "o1".into() });
/// ```
pub fn remembered(buyers_order: Option<String>) -> Outcome {
    match buyers_order {
        Some(order_id) => Outcome::AlreadyPurchased { order_id },
        None => Outcome::SoldOut,
    }
}

/// The limiters, in order, each asked only if those before it let the purchase through:
/// `bucket` (a token, or the seconds until one), the outbox's `backlog` against
/// `max_outbox`, then `adaptive` (a permit `P`, held for the reserve call).
///
/// ```
/// use flashgate_core::reservation::{limits, Held};
/// assert_eq!(limits(|| Ok(()), 0, 10, || Some("permit")), Ok("permit"));
/// assert_eq!(limits(|| Ok(()), 10, 10, || Some("permit")), Err(Held::OutboxFull));
/// ```
pub fn limits<P>(
    bucket: impl FnOnce() -> Result<(), u64>,
    backlog: u64,
    max_outbox: u64,
    adaptive: impl FnOnce() -> Option<P>,
) -> Result<P, Held> {
    bucket().map_err(|retry_after_secs| Held::Bucket { retry_after_secs })?;
    if backlog >= max_outbox {
        return Err(Held::OutboxFull);
    }
    adaptive().ok_or(Held::Adaptive)
}

/// The contract's answer of a reservation's verdict.
///
/// ```
/// use flashgate_core::reservation::{answer, Reservation};
/// use flashgate_core::wire::Outcome;
/// assert_eq!(answer(&Reservation::RateLimited(1_200)), Outcome::RateLimited { retry_after_secs: 2 });
/// assert_eq!(answer(&Reservation::Replayed), Outcome::Unauthenticated);
/// let order = flashgate_core::ids::OrderId::parse("o1").expect("an order id");
/// assert_eq!(answer(&Reservation::Unreplicated(order)), Outcome::Busy { retry_after_secs: 1 });
/// ```
pub fn answer(verdict: &Reservation) -> Outcome {
    match verdict {
        Reservation::Reserved(order) => Outcome::Queued {
            order_id: order.to_string(),
        },
        Reservation::AlreadyPurchased(order_id) => Outcome::AlreadyPurchased {
            order_id: order_id.clone(),
        },
        // Not known to survive a failover: no 202 for it.
        Reservation::Unreplicated(_) => Outcome::Busy {
            retry_after_secs: 1,
        },
        Reservation::SoldOut(_) => Outcome::SoldOut,
        Reservation::RateLimited(ms) => Outcome::RateLimited {
            retry_after_secs: ms.div_ceil(1000).max(1),
        },
        Reservation::NoEvent => Outcome::EventNotFound,
        // A replayed signature is an unauthenticated request (the replay guard).
        Reservation::Replayed => Outcome::Unauthenticated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::Cell;

    /// The whole decision as the origin runs it, with what each limiter was asked.
    struct Run {
        answer: Result<Outcome, Held>,
        bucket_asked: bool,
        adaptive_asked: bool,
    }

    #[allow(clippy::too_many_arguments)]
    fn decide(
        w: Option<Window>,
        now: Millis,
        paused: bool,
        sold_out: bool,
        buyers_order: Option<String>,
        bucket: Result<(), u64>,
        backlog: u64,
        max_outbox: u64,
        adaptive: bool,
        verdict: &Reservation,
    ) -> Run {
        let bucket_asked = Cell::new(false);
        let adaptive_asked = Cell::new(false);
        let answer = (|| {
            if let Err(o) = window(w, now).and_then(|()| not_paused(paused)) {
                return Ok(o);
            }
            if sold_out {
                return Ok(remembered(buyers_order));
            }
            limits(
                || {
                    bucket_asked.set(true);
                    bucket
                },
                backlog,
                max_outbox,
                || {
                    adaptive_asked.set(true);
                    adaptive.then_some(())
                },
            )?;
            Ok(answer(verdict))
        })();
        Run {
            answer,
            bucket_asked: bucket_asked.get(),
            adaptive_asked: adaptive_asked.get(),
        }
    }

    fn verdicts() -> impl Strategy<Value = Reservation> {
        let order = OrderId::parse("0190a0b0c0d0e0f0a0b0c0d0e0f0a0b0").expect("an order id");
        prop_oneof![
            Just(Reservation::Reserved(order.clone())),
            Just(Reservation::Unreplicated(order)),
            Just(Reservation::AlreadyPurchased("o1".into())),
            Just(Reservation::SoldOut("v1".into())),
            (1u64..10_000).prop_map(Reservation::RateLimited),
            Just(Reservation::NoEvent),
            Just(Reservation::Replayed),
        ]
    }

    proptest! {
        /// A purchase is queued exactly when the sale is live, the event is not remembered
        /// sold out, every limiter lets it through and the script reserved; a limiter is
        /// asked only when everything before it passed.
        #[test]
        fn the_whole_decision(
            known in any::<bool>(),
            starts_at in 0i64..2_000,
            length in 1i64..2_000,
            now in 0i64..4_000,
            paused in any::<bool>(),
            sold_out in any::<bool>(),
            buyer in any::<bool>(),
            bucket_ok in any::<bool>(),
            wait in 0u64..5,
            backlog in 0u64..20,
            max_outbox in 1u64..20,
            adaptive in any::<bool>(),
            verdict in verdicts(),
        ) {
            let w = known.then_some(Window { starts_at, ends_at: starts_at + length });
            let live = known && starts_at <= now && now < starts_at + length;
            let run = decide(
                w, now, paused, sold_out, buyer.then(|| "o9".to_owned()),
                if bucket_ok { Ok(()) } else { Err(wait) },
                backlog, max_outbox, adaptive, &verdict,
            );
            if live && paused {
                prop_assert_eq!(run.answer.clone().ok(), Some(Outcome::Paused));
            }
            let passes_memo = live && !paused && !sold_out;
            prop_assert_eq!(run.bucket_asked, passes_memo);
            prop_assert_eq!(run.adaptive_asked, passes_memo && bucket_ok && backlog < max_outbox);
            let queued = matches!(run.answer, Ok(Outcome::Queued { .. }));
            prop_assert_eq!(
                queued,
                passes_memo && bucket_ok && backlog < max_outbox && adaptive
                    && matches!(verdict, Reservation::Reserved(_))
            );
            if live && !paused && sold_out {
                prop_assert_eq!(run.answer.ok(), Some(if buyer {
                    Outcome::AlreadyPurchased { order_id: "o9".into() }
                } else {
                    Outcome::SoldOut
                }));
            }
        }

        /// Every verdict has a contract answer, and a retry is never asked for sooner than a
        /// second nor later than the script said.
        #[test]
        fn a_rate_limited_verdict_retries_after_its_wait(ms in 0u64..100_000) {
            let Outcome::RateLimited { retry_after_secs } = answer(&Reservation::RateLimited(ms))
            else {
                panic!("rate limited");
            };
            prop_assert!(retry_after_secs >= 1);
            prop_assert!(retry_after_secs * 1000 >= ms && retry_after_secs * 1000 < ms.max(1) + 1000);
        }
    }

    #[test]
    fn held_purchases_answer_as_documented() {
        assert_eq!(
            Held::Bucket {
                retry_after_secs: 0
            }
            .outcome(),
            Outcome::RateLimited {
                retry_after_secs: 1
            }
        );
        assert_eq!(
            Held::OutboxFull.outcome(),
            Outcome::Busy {
                retry_after_secs: 1
            }
        );
    }
}
