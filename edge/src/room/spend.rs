//! Spending a receipt on a purchase (`core::room::spend`): one call on the user's shard
//! before the purchase is forwarded, and one more only when the answer decided nothing.

use super::{call, shard_name, Call, Mark, Spent};
use flashgate_core::admission;
use flashgate_core::ids::{EventId, UserId};
use flashgate_core::room::chain::shard_of;
use flashgate_core::room::spend;
use flashgate_core::wire::Outcome;
use flashgate_core::Millis;
use worker::Env;

/// A receipt spent on a purchase being forwarded: [`Spending::settle`] it with the answer.
#[derive(Debug)]
pub struct Spending {
    event: EventId,
    shard: String,
    mark: Mark,
}

/// Spends `user`'s receipt for `event` in their shard (of `shards`): 403 `receipt_used`
/// when it was spent already.
pub async fn spend(
    env: &Env,
    event: &EventId,
    user: &UserId,
    shards: u32,
    now: Millis,
) -> Result<Spending, Outcome> {
    let spending = Spending {
        event: event.clone(),
        shard: shard_name(event, shard_of(user, shards)),
        mark: Mark {
            user: user.clone(),
            at: now,
        },
    };
    let spent: Spent = call(
        env,
        event,
        &spending.shard,
        &Call::Spend(spending.mark.clone()),
    )
    .await?;
    if spent.first {
        Ok(spending)
    } else {
        Err(admission::receipt_used())
    }
}

impl Spending {
    /// Keeps the receipt spent when the origin's answer `status` decided the purchase;
    /// else gives it back, so the shopper's retry passes. A give-back that fails leaves
    /// the receipt spent: the order lookup still tells the shopper where they stand.
    pub async fn settle(self, env: &Env, status: Option<u16>) {
        if spend::decided(status) {
            return;
        }
        let back = Call::GiveBack(self.mark);
        let _: Result<Spent, Outcome> = call(env, &self.event, &self.shard, &back).await;
    }
}
