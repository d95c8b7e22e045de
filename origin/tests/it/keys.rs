//! Which edge signatures the origin accepts: under the current or, during a rotation, the
//! previous `edge_secret`, and only for its own `environment`.

use crate::helpers::*;
use figment::Figment;

const PREVIOUS: &str = "previous-edge-secret-9876543210";
const THIRD: &str = "third-edge-secret-5432109876";

/// Reserved orders and units left of `event`.
async fn counts(app: &TestApp, event: &str) -> (Option<u64>, Option<u64>) {
    let stats = app.stats(event).await;
    (stats["reserved"].as_u64(), stats["stock_left"].as_u64())
}

#[tokio::test]
async fn during_a_rotation_both_edge_secrets_sign_and_a_third_does_not() {
    let app = spawn_app(generous().merge(("edge_secret_previous", PREVIOUS))).await;
    app.live_event("rotating", 5).await;
    let env = app.settings.environment.clone();
    let third = app.purchase_as(&env, THIRD, "rotating", "u3").await;
    assert_eq!(third.status, 401, "{}", third.body);
    assert_eq!(third.body["error"], "unauthenticated");
    assert_eq!(counts(&app, "rotating").await, (Some(0), Some(5)));
    let previous = app.purchase_as(&env, PREVIOUS, "rotating", "u1").await;
    assert_eq!(previous.status, 202, "{}", previous.body);
    let current = app.purchase_as(&env, EDGE_SECRET, "rotating", "u2").await;
    assert_eq!(current.status, 202, "{}", current.body);
    assert_eq!(counts(&app, "rotating").await, (Some(2), Some(3)));
    app.stop().await;
}

#[tokio::test]
async fn once_the_rotation_is_over_the_previous_secret_is_refused() {
    let app = spawn_app(generous()).await;
    app.live_event("rotated", 5).await;
    let env = app.settings.environment.clone();
    let r = app.purchase_as(&env, PREVIOUS, "rotated", "u1").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(counts(&app, "rotated").await, (Some(0), Some(5)));
    app.stop().await;
}

#[tokio::test]
async fn a_request_signed_for_another_environment_is_refused_and_changes_nothing() {
    let app = spawn_app(generous().merge(("environment", "production"))).await;
    app.live_event("prod-sale", 5).await;
    // The same secret on staging and production: only the signed environment differs.
    let staging = app
        .purchase_as("staging", EDGE_SECRET, "prod-sale", "u1")
        .await;
    assert_eq!(staging.status, 401, "{}", staging.body);
    assert_eq!(staging.body["error"], "unauthenticated");
    assert_eq!(counts(&app, "prod-sale").await, (Some(0), Some(5)));
    let production = app
        .purchase_as("production", EDGE_SECRET, "prod-sale", "u1")
        .await;
    assert_eq!(production.status, 202, "{}", production.body);
    assert_eq!(counts(&app, "prod-sale").await, (Some(1), Some(4)));
    app.stop().await;
}

#[tokio::test]
async fn an_origin_of_no_named_environment_serves_the_dev_edge() {
    let app = spawn_app(Figment::new()).await;
    assert_eq!(app.settings.environment, "dev");
    app.live_event("dev-sale", 1).await;
    let r = app.purchase_as("dev", EDGE_SECRET, "dev-sale", "u1").await;
    assert_eq!(r.status, 202, "{}", r.body);
    app.stop().await;
}
