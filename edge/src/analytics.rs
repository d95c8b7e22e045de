//! One Workers Analytics Engine data point per shopper answer, where the `ANALYTICS`
//! binding exists: what every isolate in every location answered, summed by Cloudflare
//! (an isolate's own counters in `/__edge/stats` see one isolate only). Under
//! `wrangler dev` the binding is a no-op. docs/operations.md shows the queries.

use crate::guard;
use worker::{AnalyticsEngineDataPointBuilder, Env};

/// The binding (wrangler.toml `[[analytics_engine_datasets]]`).
pub const BINDING: &str = "ANALYTICS";

/// Records that the edge answered `status` to a shopper's `endpoint` call about `event`
/// (`index1` = event, `blob1` = endpoint, `blob2` = status, `double1` = 1). A missing
/// binding or a failed write loses only this point.
pub fn record(env: &Env, event: &str, endpoint: &str, status: u16) {
    let Ok(dataset) = env.analytics_engine(BINDING) else {
        return;
    };
    let written = AnalyticsEngineDataPointBuilder::new()
        .indexes([event])
        .add_blob(endpoint)
        .add_blob(status.to_string().as_str())
        .add_double(1.0)
        .write_to(&dataset);
    guard::with(|i| match written {
        Ok(()) => i.counters.analytics_points += 1,
        Err(_) => i.counters.analytics_failed += 1,
    });
}
