//! The consumer's confirmation of a batch in Redis (`lua/confirm_many.lua`): what it writes
//! for each state a buyer's order can be in, and that it counts each order once.

use crate::helpers::*;
use flashgate_core::ids::{EventId, UserId};
use flashgate_origin::redis::Store;

async fn hget(store: &Store, key: &str, field: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query_async(&mut store.conn())
        .await
        .expect("HGET")
}

async fn hset(store: &Store, key: &str, pairs: &[(String, String)]) {
    let mut cmd = redis::cmd("HSET");
    cmd.arg(key);
    for (field, value) in pairs {
        cmd.arg(field).arg(value);
    }
    let _: u64 = cmd.query_async(&mut store.conn()).await.expect("HSET");
}

/// A batch larger than the script's chunk of 1,000, with an order sent twice, an order a
/// failover lost (no status), a spilled order whose claim has not settled, and a buyer
/// whose status is another order's: the queued ones are confirmed and counted once, the
/// lost and spilled ones written confirmed and held for their buyers, the other left as it
/// was; the same batch again changes nothing.
#[tokio::test]
async fn a_batch_is_confirmed_once_whatever_redis_held() {
    let store = Store::connect(
        &service("FLASHGATE_TEST_REDIS_URL"),
        &format!("{}:", unique("confirm")),
    )
    .await
    .expect("redis");
    let event = EventId::parse("confirm").expect("event id");
    let k = store.keys(&event);
    let queued: Vec<(String, String)> = (0..2_500)
        .map(|i| (format!("u{i}"), format!("o{i}")))
        .collect();
    hset(&store, &k.orders(), &queued).await;
    let statuses: Vec<(String, String)> = queued
        .iter()
        .map(|(u, o)| (u.clone(), format!("queued:{o}")))
        .collect();
    hset(&store, &k.status(), &statuses).await;
    hset(
        &store,
        &k.orders(),
        &[
            ("spilled".into(), "claim:o-spilled:99".into()),
            ("other".into(), "o-other-2".into()),
        ],
    )
    .await;
    hset(
        &store,
        &k.status(),
        &[
            ("spilled".into(), "queued:o-earlier".into()),
            ("other".into(), "queued:o-other-2".into()),
        ],
    )
    .await;

    let users: Vec<(UserId, String)> = queued
        .iter()
        .chain(&[("u0".into(), "o0".into())])
        .chain(&[
            ("lost".into(), "o-lost".into()),
            ("spilled".into(), "o-spilled".into()),
            ("other".into(), "o-other-1".into()),
        ])
        .map(|(u, o)| (UserId::parse(u).expect("user id"), o.clone()))
        .collect();
    let batch: Vec<(&UserId, &str)> = users.iter().map(|(u, o)| (u, o.as_str())).collect();
    let changed = store.confirm_many(&event, &batch).await.expect("confirm");
    assert_eq!(
        changed, 2_500,
        "each queued order once, u0's second copy not again"
    );
    let confirmed = || async { hget(&store, &k.stats(), "confirmed").await };
    assert_eq!(confirmed().await.as_deref(), Some("2500"));
    for (user, status, order) in [
        ("u0", "confirmed:o0", "o0"),
        ("u2499", "confirmed:o2499", "o2499"),
        ("lost", "confirmed:o-lost", "o-lost"),
        ("spilled", "confirmed:o-spilled", "o-spilled"),
        ("other", "queued:o-other-2", "o-other-2"),
    ] {
        assert_eq!(
            hget(&store, &k.status(), user).await.as_deref(),
            Some(status),
            "{user}'s status"
        );
        assert_eq!(
            hget(&store, &k.orders(), user).await.as_deref(),
            Some(order),
            "{user}'s order"
        );
    }

    assert_eq!(store.confirm_many(&event, &batch).await.expect("again"), 0);
    assert_eq!(confirmed().await.as_deref(), Some("2500"));
    assert_eq!(
        hget(&store, &k.status(), "other").await.as_deref(),
        Some("queued:o-other-2")
    );
}
