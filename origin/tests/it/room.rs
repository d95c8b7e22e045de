//! The room at the origin: an event's room settings, the admitted position carried from
//! the signed purchase to the order row, and the fairness report.

use crate::consumer::{order_status, start_consumer};
use crate::helpers::*;
use figment::Figment;
use flashgate_core::ids::EventId;
use flashgate_core::sign::{self, Signed};
use flashgate_origin::cmd::report::fairness;
use flashgate_origin::db;
use std::process::Command;

impl TestApp {
    /// `PUT /admin/events/{event}` with this body.
    async fn put_spec(&self, event: &str, spec: &serde_json::Value) -> Reply {
        reply(
            self.http
                .put(format!("{}/admin/events/{event}", self.base))
                .bearer_auth(ADMIN_TOKEN)
                .json(spec)
                .send()
                .await
                .expect("origin answers"),
        )
        .await
    }
}

fn spec(starts_at: i64, room: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"name": "Phone", "stock": 5, "starts_at": rfc3339(starts_at),
        "ends_at": rfc3339(starts_at + 3_600_000), "room": room})
}

#[tokio::test]
async fn an_event_carries_its_room_settings_to_the_edge() {
    let app = spawn_app(Figment::new()).await;
    let later = now_ms() + 3_600_000;
    let put = app
        .put_spec(
            "roomy",
            &spec(later, serde_json::json!({"admit_per_second": 50})),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    assert_eq!(put.body["room"]["admit_per_second"], 50);
    // Missing fields take their defaults.
    assert_eq!(put.body["room"]["session_ms"], 120_000);
    let info = app.signed("GET", "/api/events/roomy", None, b"").await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert_eq!(info.body["room"]["admit_per_second"], 50);

    // Unknown or out of bounds: 400 naming the field, and nothing changes.
    for (room, field) in [
        (
            serde_json::json!({"admit_per_sec": 5}),
            "room.admit_per_sec",
        ),
        (
            serde_json::json!({"margin_per_mille": 900}),
            "room.margin_per_mille",
        ),
        (serde_json::json!({"session_ms": "long"}), "room.session_ms"),
        (serde_json::json!(7), "room must be a JSON object"),
    ] {
        let bad = app.put_spec("roomy", &spec(later, room)).await;
        assert_eq!(bad.status, 400, "{}", bad.body);
        assert_eq!(bad.body["error"], "invalid_event");
        let message = bad.body["message"].as_str().expect("message");
        assert!(message.contains(field), "{message}");
    }
    let info = app.signed("GET", "/api/events/roomy", None, b"").await;
    assert_eq!(info.body["room"]["admit_per_second"], 50);

    // A spec replaces the event's: without room settings, the edge's defaults apply.
    let plain = app.admin_put("roomy", 5, later, later + 60_000).await;
    assert_eq!(plain.status, 200, "{}", plain.body);
    assert!(plain.body.get("room").is_none(), "{}", plain.body);
    let info = app.signed("GET", "/api/events/roomy", None, b"").await;
    assert!(info.body.get("room").is_none(), "{}", info.body);

    // Once the sale has started, its settings stay as they are.
    app.live_event("begun", 5).await;
    let late = app
        .put_spec(
            "begun",
            &spec(now_ms() - 1000, serde_json::json!({"admit_per_second": 9})),
        )
        .await;
    assert_eq!(late.status, 409, "{}", late.body);
    let info = app.signed("GET", "/api/events/begun", None, b"").await;
    assert!(info.body.get("room").is_none(), "{}", info.body);
    app.stop().await;
}

// Multi-threaded: the CLI runs as a blocking child process while this runtime serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_puts_and_shows_room_settings() {
    let app = spawn_app(Figment::new()).await;
    let later = now_ms() + 3_600_000;
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
    let (starts, ends) = (rfc3339(later), rfc3339(later + 60_000));
    let put = |room: &str| {
        event(&[
            "put",
            "cli-room",
            "--name",
            "Phone",
            "--stock",
            "3",
            "--starts-at",
            &starts,
            "--ends-at",
            &ends,
            "--room",
            room,
        ])
    };
    let ok = put(r#"{"admit_per_second": 500, "prequeue_ms": 60000}"#);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let show = event(&["show", "cli-room"]);
    let shown: serde_json::Value =
        serde_json::from_slice(&show.stdout).expect("show prints the event as JSON");
    assert_eq!(shown["room"]["admit_per_second"], 500);
    assert_eq!(shown["room"]["prequeue_ms"], 60_000);
    // Not JSON: named before anything is sent; out of bounds: the origin's 400.
    let typo = put("{admit_per_second: 5}");
    assert!(!typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("not JSON"));
    let bounds = put(r#"{"admit_per_second": 0}"#);
    assert!(!bounds.status.success());
    assert!(String::from_utf8_lossy(&bounds.stdout).contains("room.admit_per_second"));
    let shown: serde_json::Value =
        serde_json::from_slice(&event(&["show", "cli-room"]).stdout).expect("json");
    assert_eq!(shown["room"]["admit_per_second"], 500);
    app.stop().await;
}

#[tokio::test]
async fn a_position_or_client_net_must_be_signed_by_the_edge() {
    let app = spawn_app(Figment::new()).await;
    app.live_event("signed-room", 5).await;
    let path = "/api/events/signed-room/purchase";
    let nonce = unique("n");
    let signed = Signed {
        environment: &app.settings.environment,
        method: "POST",
        path,
        user: "mallory",
        timestamp: now_ms(),
        nonce: &nonce,
        body: b"{}",
        room_position: None,
        client_net: None,
    };
    let sig = signed.sign(EDGE_SECRET.as_bytes());
    // A position or a client network added to a request signed without one, or
    // malformed: refused.
    let forged = [
        (sign::HEADER_ROOM_POSITION, "1"),
        (sign::HEADER_ROOM_POSITION, "one"),
        (sign::HEADER_ROOM_POSITION, ""),
        (sign::HEADER_CLIENT_NET, "192.0.2.0/24"),
        (sign::HEADER_CLIENT_NET, "192.0.2.0/24\tx"),
        (sign::HEADER_CLIENT_NET, "not a net"),
    ];
    for (header, value) in forged {
        let r = reply(
            app.http
                .post(format!("{}{path}", app.base))
                .header(sign::HEADER_SIGNATURE, &sig)
                .header(sign::HEADER_TIMESTAMP, signed.timestamp.to_string())
                .header(sign::HEADER_NONCE, &nonce)
                .header(sign::HEADER_USER, "mallory")
                .header(header, value)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("origin answers"),
        )
        .await;
        assert_eq!(r.status, 401, "{header} {value:?}: {}", r.body);
    }
    assert_eq!(app.stats("signed-room").await["reserved"], 0);
    app.stop().await;
}

// Multi-threaded: the CLI runs as a blocking child process while this runtime serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admitted_positions_land_in_the_orders_and_the_report() {
    let db = fresh_database().await;
    let app = spawn_app(Figment::new().merge(("user_limit", 1000))).await;
    app.live_event("fair", 20).await;
    app.live_event("plain", 5).await;
    let pool = db::connect(&db).await.expect("db");
    let running = start_consumer(&app, &pool);

    // Ten winners, all among the first tenth of 100 entrants; one buyer without the room.
    for position in 1..=10u64 {
        let r = app
            .purchase_at("fair", &format!("w{position}"), position)
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    assert_eq!(app.purchase("fair", "outside").await.status, 202);
    assert_eq!(app.purchase("plain", "someone").await.status, 202);
    eventually("orders confirmed", 60, || async {
        order_status(&app, "fair", "outside").await["status"] == "confirmed"
            && order_status(&app, "fair", "w10").await["status"] == "confirmed"
            && order_status(&app, "plain", "someone").await["status"] == "confirmed"
    })
    .await;
    running.stop().await;
    let (position,): (Option<u64>,) = sqlx::query_as(
        "SELECT room_position FROM orders WHERE event_id = 'fair' AND user_id = 'w7'",
    )
    .fetch_one(&pool)
    .await
    .expect("row");
    assert_eq!(position, Some(7));
    let (none,): (Option<u64>,) = sqlx::query_as(
        "SELECT room_position FROM orders WHERE event_id = 'fair' AND user_id = 'outside'",
    )
    .fetch_one(&pool)
    .await
    .expect("row");
    assert_eq!(none, None);
    // The network the edge signed travels with the order to its row.
    let (net,): (Option<String>,) =
        sqlx::query_as("SELECT client_net FROM orders WHERE event_id = 'fair' AND user_id = 'w7'")
            .fetch_one(&pool)
            .await
            .expect("row");
    assert_eq!(net.as_deref(), Some(TestApp::CLIENT_NET));

    let report = fairness(&pool, &EventId::parse("fair").expect("id"), Some(100))
        .await
        .expect("report");
    assert_eq!((report.orders, report.with_position), (11, 10));
    let table = report.by_decile.expect("positions");
    let wins: Vec<u64> = table.deciles.iter().map(|d| d.wins).collect();
    assert_eq!(wins, [10, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!((table.deciles[0].from, table.deciles[0].to), (1, 10));
    // 9²/1 in the first decile and 1²/1 in each of the nine others.
    assert!(
        (table.chi_square - 90.0).abs() < 1e-9,
        "{}",
        table.chi_square
    );
    assert!(table.p_value < 1e-12, "{}", table.p_value);

    let report = |event: &str, json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flashgate"));
        cmd.args(["event", "report", event, "--entrants", "100"])
            .env("FLASHGATE_MYSQL_URL", &db)
            .env("RUST_LOG", "off");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().expect("flashgate runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let printed: serde_json::Value =
        serde_json::from_str(&report("fair", true)).expect("--json prints JSON");
    assert_eq!(printed["with_position"], 10);
    assert_eq!(printed["by_decile"]["deciles"][0]["wins"], 10);
    assert_eq!(printed["by_decile"]["degrees_of_freedom"], 9);
    let text = report("fair", false);
    assert!(
        text.contains("chi-square 90.00 with 9 degree(s) of freedom"),
        "{text}"
    );
    assert!(
        text.contains("wins by client network: 10 order(s) from 1 network(s)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("      10  {}", TestApp::CLIENT_NET)),
        "{text}"
    );
    assert_eq!(
        printed["by_network"]["top"][0]["network"],
        TestApp::CLIENT_NET
    );
    let plain = report("plain", false);
    assert!(
        plain.contains("1 order(s), 0 with a room position"),
        "{plain}"
    );
    assert!(plain.contains("nothing to measure"), "{plain}");
    app.stop().await;
}
