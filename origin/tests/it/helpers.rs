//! Test harness: the real origin on port 0 against the real Redis, MariaDB and broker that
//! `./dev test` starts, isolated per test by a Redis key prefix, a topic and a database.

pub use crate::fixtures::*;
pub use crate::servers::*;
use figment::Figment;
use flashgate_core::sign::{self, Signed};
use flashgate_origin::clock::{Clock, SystemClock};
use flashgate_origin::config::Settings;
use flashgate_origin::redis::Store;
use flashgate_origin::serve::Application;
pub use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;

/// What the consumer tells Redis of an order refused for its buyer, whose unit `unit`
/// goes back, for tests that settle an order themselves.
pub fn give_back(unit: u64) -> flashgate_origin::redis::Refused<'static> {
    flashgate_origin::redis::Refused {
        unit: Some(unit),
        give_back: true,
        holder: None,
    }
}

/// Settings for one test: own Redis prefix and Kafka topic.
pub fn settings(extra: Figment) -> Settings {
    let base = Figment::new()
        .merge(("listen", "127.0.0.1:0"))
        .merge(("redis_url", service("FLASHGATE_TEST_REDIS_URL")))
        .merge(("kafka_brokers", service("FLASHGATE_TEST_KAFKA_BROKERS")))
        .merge(("orders_topic", unique("test-orders-")))
        .merge(("key_prefix", unique("t") + ":"))
        .merge(("consumer.group", unique("test-group-")))
        .merge(("edge_secret", EDGE_SECRET))
        .merge(("admin_token", ADMIN_TOKEN))
        .merge(("auth_secret", "test-auth-secret-0123456789"))
        .merge(("event_cache_ms", 0))
        // A loaded CI machine can stall a healthy Redis call for a while; tests of the
        // deadline itself set their own.
        .merge(("redis_timeout_ms", 2000));
    Settings::from_figment(base.merge(extra)).expect("test settings are valid")
}

pub fn generous() -> Figment {
    Figment::new().merge(("user_limit", 1000))
}

pub struct TestApp {
    pub base: String,
    pub settings: Settings,
    pub http: reqwest::Client,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub state: Option<Arc<flashgate_origin::serve::AppState>>,
    stop: Option<flashgate_origin::shutdown::Trigger>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app(extra: Figment) -> TestApp {
    spawn_with_settings(settings(extra)).await
}

impl TestApp {
    /// A client for an origin running elsewhere (e.g. the real binary) at `base`.
    pub async fn remote(base: String, settings: Settings) -> TestApp {
        let store = Store::connect(
            settings.redis.url.expose_secret(),
            &settings.redis.key_prefix,
        )
        .await
        .expect("redis");
        TestApp {
            base,
            settings,
            http: http_client(),
            store,
            clock: Arc::new(SystemClock),
            state: None,
            stop: None,
            task: None,
        }
    }
}

/// The HTTP client of every test: a deadline, and enough idle connections for storms.
/// An idle connection is dropped after 500 ms, before the origin closes it (after
/// `header_timeout_ms`, 1 s in the shortest test): reusing one the origin is closing
/// would fail the request with a reset.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_millis(500))
        .pool_max_idle_per_host(256)
        .build()
        .expect("client")
}

pub async fn spawn_with_settings(settings: Settings) -> TestApp {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let app = Application::build_with_clock(settings.clone(), clock.clone())
        .await
        .expect("origin builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = Some(app.state());
    let (tx, rx) = flashgate_origin::shutdown::channel();
    let task = tokio::spawn(app.run(rx));
    let store = Store::connect(
        settings.redis.url.expose_secret(),
        &settings.redis.key_prefix,
    )
    .await
    .expect("redis");
    TestApp {
        base,
        settings,
        http: http_client(),
        store,
        clock,
        state,
        stop: Some(tx),
        task: Some(task),
    }
}

pub fn rfc3339(ms: i64) -> String {
    flashgate_core::wire::fmt_time(ms)
}

pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
    pub retry_after: Option<String>,
}

impl TestApp {
    /// The current adaptive concurrency limit of an in-process app.
    pub fn state_limit(&self) -> usize {
        self.state
            .as_ref()
            .expect("in-process app")
            .adaptive_limit()
    }

    /// The app's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of the unlabelled metric `name` in `/metrics` (0 before it was recorded).
    pub async fn metric(&self, name: &str) -> f64 {
        let prefix = format!("{name} ");
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0.0, |v| v.trim().parse().expect("a number"))
    }

    /// Stops the server gracefully and waits for it (the relay flushes).
    pub async fn stop(mut self) {
        if let Some(trigger) = self.stop.take() {
            trigger.fire();
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("server ran");
        }
    }

    /// A request as the edge sends it, signed with `secret` at `ts` (with a new nonce).
    #[allow(clippy::too_many_arguments)]
    pub async fn signed_at(
        &self,
        method: &str,
        path: &str,
        user: Option<&str>,
        body: &[u8],
        content_type: Option<&str>,
        ts: i64,
        secret: &str,
    ) -> Reply {
        let nonce = unique("n");
        self.signed_exactly(method, path, user, body, content_type, ts, secret, &nonce)
            .await
    }

    /// A request as the edge sends it, with the given nonce (the same arguments twice
    /// send the same request twice: a replay).
    #[allow(clippy::too_many_arguments)]
    pub async fn signed_exactly(
        &self,
        method: &str,
        path: &str,
        user: Option<&str>,
        body: &[u8],
        content_type: Option<&str>,
        ts: i64,
        secret: &str,
        nonce: &str,
    ) -> Reply {
        let environment = self.settings.environment.clone();
        self.signed_for(
            &environment,
            method,
            path,
            user,
            body,
            content_type,
            ts,
            secret,
            nonce,
        )
        .await
    }

    /// A purchase as an edge of `environment` holding `secret` sends it.
    pub async fn purchase_as(
        &self,
        environment: &str,
        secret: &str,
        event: &str,
        user: &str,
    ) -> Reply {
        let path = format!("/api/events/{event}/purchase");
        let json = Some("application/json");
        let nonce = unique("n");
        self.signed_for(
            environment,
            "POST",
            &path,
            Some(user),
            b"{}",
            json,
            now_ms(),
            secret,
            &nonce,
        )
        .await
    }

    /// A request as an edge of `environment` sends it.
    #[allow(clippy::too_many_arguments)]
    pub async fn signed_for(
        &self,
        environment: &str,
        method: &str,
        path: &str,
        user: Option<&str>,
        body: &[u8],
        content_type: Option<&str>,
        ts: i64,
        secret: &str,
        nonce: &str,
    ) -> Reply {
        let signed = Signed {
            environment,
            method,
            path,
            user: user.unwrap_or(""),
            timestamp: ts,
            nonce,
            body,
            room_position: None,
            client_net: None,
        };
        self.send_signed(signed, content_type, secret).await
    }

    /// Sends `signed` as the edge does, with its signature made with `secret`.
    pub async fn send_signed(
        &self,
        signed: Signed<'_>,
        content_type: Option<&str>,
        secret: &str,
    ) -> Reply {
        let Signed {
            method,
            path,
            user,
            timestamp: ts,
            nonce,
            body,
            room_position,
            client_net,
            ..
        } = signed;
        let sig = signed.sign(secret.as_bytes());
        let user = Some(user).filter(|u| !u.is_empty());
        let mut req = self
            .http
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.base),
            )
            .header(sign::HEADER_SIGNATURE, sig)
            .header(sign::HEADER_TIMESTAMP, ts.to_string())
            .header(sign::HEADER_NONCE, nonce)
            .body(body.to_vec());
        if let Some(u) = user {
            req = req.header(sign::HEADER_USER, u);
        }
        if let Some(p) = room_position {
            req = req.header(sign::HEADER_ROOM_POSITION, p.to_string());
        }
        if let Some(n) = client_net {
            req = req.header(sign::HEADER_CLIENT_NET, n);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        reply(req.send().await.expect("origin answers")).await
    }

    pub async fn signed(&self, method: &str, path: &str, user: Option<&str>, body: &[u8]) -> Reply {
        let ct = (!body.is_empty()).then_some("application/json");
        self.signed_at(method, path, user, body, ct, now_ms(), EDGE_SECRET)
            .await
    }

    pub async fn purchase(&self, event: &str, user: &str) -> Reply {
        self.signed(
            "POST",
            &format!("/api/events/{event}/purchase"),
            Some(user),
            b"{}",
        )
        .await
    }

    /// The client network [`TestApp::purchase_at`] signs.
    pub const CLIENT_NET: &'static str = "192.0.2.0/24";

    /// A purchase the edge admitted at room `position`, from [`TestApp::CLIENT_NET`].
    pub async fn purchase_at(&self, event: &str, user: &str, position: u64) -> Reply {
        let nonce = unique("n");
        let path = format!("/api/events/{event}/purchase");
        let signed = Signed {
            environment: &self.settings.environment,
            method: "POST",
            path: &path,
            user,
            timestamp: now_ms(),
            nonce: &nonce,
            body: b"{}",
            room_position: Some(position),
            client_net: Some(Self::CLIENT_NET),
        };
        self.send_signed(signed, Some("application/json"), EDGE_SECRET)
            .await
    }

    pub async fn admin_put(&self, event: &str, stock: u64, starts_at: i64, ends_at: i64) -> Reply {
        let body = serde_json::json!({
            "name": format!("event {event}"), "stock": stock,
            "starts_at": rfc3339(starts_at), "ends_at": rfc3339(ends_at),
        });
        self.admin_put_spec(event, &body).await
    }

    /// `PUT /admin/events/{event}` with the spec `body`.
    pub async fn admin_put_spec(&self, event: &str, body: &serde_json::Value) -> Reply {
        reply(
            self.http
                .put(format!("{}/admin/events/{event}", self.base))
                .bearer_auth(ADMIN_TOKEN)
                .json(body)
                .send()
                .await
                .expect("origin answers"),
        )
        .await
    }

    /// Creates an event that is live now (started a second ago, ends in an hour).
    pub async fn live_event(&self, event: &str, stock: u64) {
        let now = now_ms();
        let r = self
            .admin_put(event, stock, now - 1000, now + 3_600_000)
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }

    pub async fn stats(&self, event: &str) -> serde_json::Value {
        let r = reply(
            self.http
                .get(format!("{}/admin/events/{event}/stats", self.base))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("origin answers"),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }
}

pub async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Reply {
        status,
        body,
        retry_after,
    }
}

/// Waits for `cond` with a deadline instead of sleeping for luck.
pub async fn eventually<F, Fut>(what: &str, secs: u64, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to a minute) until every order of `ids` is on the orders topic, and no other
/// order is.
pub async fn every_order_reaches_the_topic(app: &TestApp, ids: &std::collections::HashSet<String>) {
    use rdkafka::Message;
    let consumer = orders_consumer(app);
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < ids.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {} orders reached Kafka",
            seen.len(),
            ids.len()
        );
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            for msg in orders_in(m.payload()) {
                assert!(
                    ids.contains(&msg.order_id),
                    "unknown order {}",
                    msg.order_id
                );
                seen.insert(msg.order_id);
            }
        }
    }
}

/// A consumer of the app's orders topic from its start, in a group of its own.
pub fn orders_consumer(app: &TestApp) -> rdkafka::consumer::StreamConsumer {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let consumer: StreamConsumer =
        flashgate_origin::kafka::client_config(&app.settings.kafka.brokers)
            .set("group.id", unique("check-"))
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()
            .expect("consumer");
    consumer
        .subscribe(&[&app.settings.kafka.orders_topic])
        .expect("subscribe");
    consumer
}

/// The `reserved` and `relayed` counters of the outbox at `keys` (redis/outbox.rs).
pub async fn reserved_and_relayed(
    app: &TestApp,
    keys: &flashgate_origin::redis::EventKeys,
) -> (u64, u64) {
    redis::cmd("HMGET")
        .arg(keys.stats())
        .arg("reserved")
        .arg("relayed")
        .query_async(&mut app.store.conn())
        .await
        .expect("stats")
}
