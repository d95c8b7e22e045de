//! The rules a loaded configuration must meet, each broken one a clear error.

use super::settings::Settings;
use anyhow::bail;

/// The longest a reservation may wait for replicas: with the script's own budget (1 s),
/// inside the Redis connection's response timeout (2 s).
pub(super) const MAX_WAIT_TIMEOUT_MS: u64 = 500;

/// The reserve script hands a call's orders to one HSET (Lua's stack holds a few
/// thousand values).
const MAX_RESERVE_BATCH: usize = 1024;

/// The first rule `settings` breaks, as an error naming the setting.
pub(super) fn check(settings: &Settings) -> anyhow::Result<()> {
    if !flashgate_core::sign::valid_environment(&settings.environment) {
        bail!(
            "configuration: environment must be 1 to {} characters of a-z, 0-9 and -",
            flashgate_core::sign::MAX_ENVIRONMENT_LEN
        );
    }
    if settings.purchase.user_limit == 0 || settings.purchase.user_window_ms == 0 {
        bail!("configuration: user_limit and user_window_ms must be positive");
    }
    if settings.purchase.reserve_batch == 0 || settings.purchase.reserve_inflight == 0 {
        bail!("configuration: reserve_batch and reserve_inflight must be positive");
    }
    if settings.purchase.reserve_batch > MAX_RESERVE_BATCH {
        bail!("configuration: reserve_batch must be at most {MAX_RESERVE_BATCH}");
    }
    if settings.kafka.relay_pack == 0 || settings.kafka.relay_pack > crate::kafka::MAX_PACK {
        bail!(
            "configuration: relay_pack must be between 1 and {}",
            crate::kafka::MAX_PACK
        );
    }
    if settings.redis.wait_replicas > 0
        && !(1..=MAX_WAIT_TIMEOUT_MS).contains(&settings.redis.wait_timeout_ms)
    {
        bail!(
            "configuration: redis_wait_timeout_ms must be between 1 and \
             {MAX_WAIT_TIMEOUT_MS} (a reservation's whole call has 2 s)"
        );
    }
    if settings.redis.wait_strict && settings.redis.wait_replicas == 0 {
        bail!("configuration: redis_wait_strict needs redis_wait_replicas of 1 or more");
    }
    if settings.redis.key_prefix.contains(['{', '}']) {
        // The event's `{E}` must be the first hash tag of each of its keys, or a
        // Redis Cluster would not keep them in one slot.
        bail!("configuration: key_prefix must not contain '{{' or '}}'");
    }
    if settings.kafka.topic_replication < 0 || settings.kafka.topic_min_insync_replicas < 0 {
        bail!("configuration: topic_replication and topic_min_insync_replicas must be 0 (automatic) or more");
    }
    // A signature stays acceptable for the skew either side of now: one forgotten
    // sooner could be replayed.
    let min_replay = 2 * flashgate_core::sign::MAX_SKEW_MS as u64;
    if settings.purchase.replay_window_ms < min_replay {
        bail!("configuration: replay_window_ms must be at least {min_replay} (twice the signature's allowed skew)");
    }
    let p = &settings.protect;
    if p.header_timeout_ms == 0 || p.body_timeout_ms == 0 || p.max_connections == 0 {
        bail!("configuration: header_timeout_ms, body_timeout_ms and max_connections must be positive");
    }
    if settings.consumer.batch_size == 0 {
        bail!("configuration: consumer.batch_size must be positive");
    }
    Ok(())
}
