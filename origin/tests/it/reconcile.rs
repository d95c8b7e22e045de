//! `flashgate reconcile` against real MariaDB and Redis: what it finds broken, and its exit.

use crate::consumer::start_consumer;
use crate::helpers::*;
use figment::Figment;
use flashgate_core::ids::EventId;
use flashgate_origin::cmd::reconcile::reconcile;
use flashgate_origin::db;

#[tokio::test]
async fn reconcile_names_what_is_broken() {
    let db = fresh_database().await;
    let app = spawn_app(Figment::new().merge(("user_limit", 1000))).await;
    app.live_event("audit", 10).await;
    let pool = db::connect(&db).await.expect("db");
    let running = start_consumer(&app, &pool);
    for u in ["a1", "a2", "a3"] {
        assert_eq!(app.purchase("audit", u).await.status, 202);
    }
    eventually("three rows", 60, || async {
        count(
            &pool,
            "SELECT COUNT(*) FROM orders WHERE event_id = 'audit'",
        )
        .await
            == 3
    })
    .await;
    running.stop().await;
    let audit = EventId::parse("audit").expect("id");
    let clean = reconcile(&app.store, &pool, &audit, now_ms(), 0)
        .await
        .expect("reconcile");
    assert!(clean.clean(), "{}", clean.render(&audit));

    // Break it: a row vanishes and a unit appears from nowhere.
    sqlx::query("DELETE FROM orders WHERE user_id = 'a2'")
        .execute(&pool)
        .await
        .expect("delete");
    let _: () = redis::cmd("INCR")
        .arg(app.store.keys(&audit).stock())
        .query_async(&mut app.store.conn())
        .await
        .expect("incr");
    let broken = reconcile(&app.store, &pool, &audit, now_ms(), 0)
        .await
        .expect("reconcile");
    let text = broken.render(&audit);
    assert!(!broken.clean());
    assert!(text.contains("MISSING") && text.contains("a2"), "{text}");
    assert!(text.contains("STOCK"), "{text}");
    // Within the grace period a missing row is not (yet) a problem.
    let young = reconcile(&app.store, &pool, &audit, now_ms(), 3_600_000)
        .await
        .expect("reconcile");
    assert!(!young.render(&audit).contains("MISSING"));

    // The command exits non-zero and says why.
    let out = reconcile_command(&app, &db, "audit", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("MISSING"));
    app.stop().await;
}

/// `flashgate reconcile --event <event> --grace-secs 0 <more>` against `app`'s Redis and
/// the database at `db`, as an operator runs it.
pub fn reconcile_command(
    app: &TestApp,
    db: &str,
    event: &str,
    more: &[&str],
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_flashgate"))
        .args(["reconcile", "--event", event, "--grace-secs", "0"])
        .args(more)
        .env(
            "FLASHGATE_REDIS_URL",
            app.settings.redis.url.expose_secret(),
        )
        .env("FLASHGATE_KEY_PREFIX", &app.settings.redis.key_prefix)
        .env("FLASHGATE_MYSQL_URL", db)
        .env("RUST_LOG", "off")
        .output()
        .expect("runs")
}
