//! The operator's admin API and CLI: list, show and end events.

use crate::helpers::*;
use figment::Figment;
use std::process::Command;

impl TestApp {
    /// An admin request with the token.
    async fn admin(&self, method: reqwest::Method, path: &str) -> Reply {
        reply(
            self.http
                .request(method, format!("{}{path}", self.base))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("origin answers"),
        )
        .await
    }
}

#[tokio::test]
async fn the_list_shows_every_event_with_its_state_and_counters() {
    let app = spawn_app(Figment::new()).await;
    app.live_event("phones", 5).await;
    let later = now_ms() + 3_600_000;
    assert_eq!(
        app.admin_put("tablets", 3, later, later + 60_000)
            .await
            .status,
        201
    );
    assert_eq!(app.purchase("phones", "alice").await.status, 202);
    let list = app.admin(reqwest::Method::GET, "/admin/events").await;
    assert_eq!(list.status, 200, "{}", list.body);
    let events = list.body["events"].as_array().expect("events");
    let ids: Vec<_> = events.iter().map(|e| e["event_id"].clone()).collect();
    assert_eq!(ids, ["phones", "tablets"]);
    assert_eq!(events[0]["state"], "live");
    assert_eq!(events[0]["stock_left"], 4);
    assert_eq!(events[0]["reserved"], 1);
    assert_eq!(events[1]["state"], "upcoming");
    // Without the token: refused, and nothing listed.
    let anonymous = reply(
        app.http
            .get(format!("{}/admin/events", app.base))
            .send()
            .await
            .expect("answers"),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    app.stop().await;
}

#[tokio::test]
async fn ending_a_live_sale_closes_it_and_keeps_its_orders() {
    let app = spawn_app(Figment::new()).await;
    app.live_event("early", 5).await;
    let alice = app.purchase("early", "alice").await;
    assert_eq!(alice.status, 202, "{}", alice.body);
    let ended = app
        .admin(reqwest::Method::POST, "/admin/events/early/end")
        .await;
    assert_eq!(ended.status, 200, "{}", ended.body);
    assert_eq!(ended.body["state"], "ended");
    let bob = app.purchase("early", "bob").await;
    assert_eq!(bob.status, 410, "{}", bob.body);
    // Alice keeps her order; ending again changes nothing.
    assert_eq!(app.stats("early").await["reserved"], 1);
    let again = app
        .admin(reqwest::Method::POST, "/admin/events/early/end")
        .await;
    assert_eq!(
        (again.status, &again.body["ends_at"]),
        (200, &ended.body["ends_at"])
    );
    // Unknown and not-yet-started events are not ended.
    let unknown = app
        .admin(reqwest::Method::POST, "/admin/events/nope/end")
        .await;
    assert_eq!(unknown.status, 404);
    let later = now_ms() + 3_600_000;
    assert_eq!(
        app.admin_put("soon", 3, later, later + 60_000).await.status,
        201
    );
    let soon = app
        .admin(reqwest::Method::POST, "/admin/events/soon/end")
        .await;
    assert_eq!(
        (soon.status, &soon.body["error"]),
        (409, &"event_not_started".into())
    );
    app.stop().await;
}

// Multi-threaded: the CLI runs as a blocking child process while this runtime serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_shows_and_ends_events() {
    let app = spawn_app(Figment::new()).await;
    app.live_event("cli-sale", 2).await;
    let event = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flashgate"))
            .arg("event")
            .args(args)
            .args(["--origin", &app.base])
            .env("FLASHGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "off")
            .output()
            .expect("flashgate runs")
    };
    let list = event(&["list"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(String::from_utf8_lossy(&list.stdout).contains("\"cli-sale\""));
    let show = event(&["show", "cli-sale"]);
    let shown: serde_json::Value =
        serde_json::from_slice(&show.stdout).expect("show prints the event as JSON");
    assert_eq!(
        (shown["state"].as_str(), shown["reserved"].as_u64()),
        (Some("live"), Some(0))
    );
    assert_eq!(app.purchase("cli-sale", "early").await.status, 202);
    let watched = event(&["watch", "cli-sale", "--count", "2", "--every-ms", "100"]);
    assert!(
        watched.status.success(),
        "{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    let watched = String::from_utf8_lossy(&watched.stdout).into_owned();
    assert_eq!(watched.lines().count(), 2, "{watched}");
    assert!(watched.contains("stock 1/2 reserved 1"), "{watched}");
    assert!(event(&["end", "cli-sale"]).status.success());
    let missing = event(&["show", "no-such"]);
    assert!(!missing.status.success());
    assert_eq!(app.purchase("cli-sale", "late").await.status, 410);
    app.stop().await;
}

#[tokio::test]
async fn a_paused_sale_answers_paused_reserves_nothing_and_resumes() {
    let app = spawn_app(Figment::new()).await;
    app.live_event("hold", 5).await;
    let paused = app
        .admin(reqwest::Method::POST, "/admin/events/hold/pause")
        .await;
    assert_eq!(
        (paused.status, &paused.body["paused"]),
        (200, &true.into()),
        "{}",
        paused.body
    );
    let before = app.stats("hold").await;
    let info = app.signed("GET", "/api/events/hold", None, b"").await;
    assert_eq!(info.body["paused"], true);
    for user in ["alice", "bob"] {
        let r = app.purchase("hold", user).await;
        assert_eq!(
            (r.status, &r.body["status"]),
            (503, &"paused".into()),
            "{}",
            r.body
        );
        assert_eq!(r.retry_after.as_deref(), Some("5"));
    }
    assert_eq!(
        app.stats("hold").await,
        before,
        "a paused sale reserves nothing"
    );
    let resumed = app
        .admin(reqwest::Method::POST, "/admin/events/hold/resume")
        .await;
    assert_eq!(
        (resumed.status, &resumed.body["paused"]),
        (200, &false.into())
    );
    assert_eq!(app.purchase("hold", "alice").await.status, 202);
    let unknown = app
        .admin(reqwest::Method::POST, "/admin/events/nope/pause")
        .await;
    assert_eq!(unknown.status, 404);
    app.stop().await;
}
