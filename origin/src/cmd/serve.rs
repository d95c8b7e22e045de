//! `flashgate serve`: the origin API with its outbox relay, until SIGINT or SIGTERM.

use crate::config::Settings;
use crate::serve::Application;

/// Builds the origin from `settings` and serves until a signal.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    app.run(super::on_signal()).await
}
