//! Redis settings the origin depends on: refused, named, or waited for (replicas).

use crate::helpers::*;
use figment::Figment;

#[tokio::test]
async fn a_redis_that_could_evict_stock_or_orders_is_refused_at_start() {
    let redis = OwnServer::redis();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let config = |policy: &str| {
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut conn = client.get_connection().expect("redis");
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg(policy)
            .exec(&mut conn)
            .expect("config set");
    };
    let build = || {
        let settings = settings(Figment::new().merge(("redis_url", url.clone())));
        flashgate_origin::serve::Application::build(settings)
    };

    config("allkeys-lru");
    let refused = build().await.err().expect("refused");
    let message = format!("{refused:#}");
    assert!(
        message.contains("maxmemory-policy allkeys-lru"),
        "{message}"
    );
    assert!(message.contains("noeviction"), "{message}");
    // Nothing was written: the refusal comes before any event or outbox exists.
    let client = redis::Client::open(url.as_str()).expect("url");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut client.get_connection().expect("redis"))
        .expect("keys");
    assert!(keys.is_empty(), "{keys:?}");

    for safe_enough in ["noeviction", "volatile-lru"] {
        config(safe_enough);
        assert!(build().await.is_ok(), "{safe_enough} serves");
    }
}

#[tokio::test]
async fn a_redis_that_hides_its_settings_is_served_with_a_warning() {
    // As managed services do: CONFIG is not available to the application.
    let redis = OwnServer::redis_with(
        false,
        &["--rename-command".into(), "CONFIG".into(), "".into()],
    );
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let app = spawn_app(Figment::new().merge(("redis_url", url))).await;
    app.live_event("hidden", 1).await;
    assert_eq!(app.purchase("hidden", "u1").await.status, 202);
    app.stop().await;
}

#[tokio::test]
async fn with_redis_wait_replicas_a_reservation_is_on_the_replica_before_its_202() {
    let primary = OwnServer::redis();
    let replica = OwnServer::redis_with(
        false,
        &[
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.port.to_string(),
        ],
    );
    let replica_conn = || {
        redis::Client::open(format!("redis://127.0.0.1:{}", replica.port))
            .expect("url")
            .get_connection()
            .expect("replica")
    };
    eventually("the replica is in sync", 20, || async {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut replica_conn())
            .expect("info");
        info.contains("master_link_status:up")
    })
    .await;
    let app = spawn_app(
        generous()
            .merge(("redis_url", format!("redis://127.0.0.1:{}", primary.port)))
            .merge(("redis_wait_replicas", 1))
            // The longest wait allowed, so a replica on a loaded machine acknowledges in
            // time; the stopped replica below costs it once, then waits fall short.
            .merge(("redis_wait_timeout_ms", 500)),
    )
    .await;
    app.live_event("replicated", 10).await;
    let orders = app
        .store
        .keys(&flashgate_core::ids::EventId::parse("replicated").expect("id"))
        .orders();
    let on_replica = |user: &str| -> Option<String> {
        redis::cmd("HGET")
            .arg(&orders)
            .arg(user)
            .query(&mut replica_conn())
            .expect("hget")
    };
    let before = app
        .metric("flashgate_reservations_unreplicated_total")
        .await;

    let r = app.purchase("replicated", "first").await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(on_replica("first").as_deref(), r.body["order_id"].as_str());
    assert_eq!(
        app.metric("flashgate_reservations_unreplicated_total")
            .await,
        before
    );

    // A replica that stops answering: purchases are still answered (the order is real on
    // the primary), and counted as not replicated.
    replica.signal("STOP");
    for user in ["second", "third"] {
        let r = app.purchase("replicated", user).await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    assert_eq!(
        app.metric("flashgate_reservations_unreplicated_total")
            .await,
        before + 2.0
    );
    replica.signal("CONT");
    eventually("the replica catches up", 20, || async {
        on_replica("third").is_some()
    })
    .await;
    // Once the replica answers again, the waits are whole again (one a second is tried in
    // full meanwhile): a purchase is acknowledged, not counted.
    let mut n = 0;
    eventually("reservations acknowledged again", 20, || {
        n += 1;
        let user = format!("again{n}");
        let app = &app;
        async move {
            let counted = app
                .metric("flashgate_reservations_unreplicated_total")
                .await;
            let r = app.purchase("replicated", &user).await;
            assert_eq!(r.status, 202, "{}", r.body);
            app.metric("flashgate_reservations_unreplicated_total")
                .await
                == counted
        }
    })
    .await;
    // Redis forgot its scripts (as after a restart): the call loads it and goes on.
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .exec(
            &mut redis::Client::open(format!("redis://127.0.0.1:{}", primary.port))
                .expect("url")
                .get_connection()
                .expect("primary"),
        )
        .expect("script flush");
    let r = app.purchase("replicated", "after-flush").await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        on_replica("after-flush").as_deref(),
        r.body["order_id"].as_str()
    );
    assert_eq!(app.stats("replicated").await["reserved"], 4 + n);
    app.stop().await;
}
