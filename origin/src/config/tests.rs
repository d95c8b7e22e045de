//! Tests of the settings.

use super::*;

#[test]
fn env_like_layers_override_defaults_and_secrets_are_checked() {
    let s = Settings::from_figment(
        Figment::new()
            .merge(("listen", "127.0.0.1:0"))
            .merge(("auth_secret", "short"))
            .merge(("redis_url", "redis://:redis-pass@127.0.0.1:6379")),
    )
    .expect("valid");
    assert_eq!(s.listen.port(), 0);
    assert!(s.secret(&s.secrets.auth_secret, "auth_secret").is_err());
    let err = s
        .secret(&s.secrets.edge_secret, "edge_secret")
        .expect_err("unset")
        .to_string();
    assert!(err.contains("FLASHGATE_EDGE_SECRET"), "{err}");
    let printed = format!("{s:?}");
    assert!(!printed.contains("short"), "secret printed");
    assert!(!printed.contains("redis-pass"), "Redis password printed");
}

/// Grouped settings keep their flat keys, read from the environment as operators set
/// them (numbers arrive as text there).
#[test]
fn flat_environment_keys_fill_the_groups() {
    // A prefix of this test's own: no other test reads it.
    for (k, v) in [
        ("FGTEST_FLAT_REDIS_TIMEOUT_MS", "750"),
        ("FGTEST_FLAT_KAFKA_BROKERS", "k1:9092,k2:9092"),
        ("FGTEST_FLAT_USER_WINDOW_MS", "2500"),
        ("FGTEST_FLAT_MAX_OUTBOX", "42"),
        ("FGTEST_FLAT_CONSUMER__MAX_RATE", "7"),
    ] {
        std::env::set_var(k, v);
    }
    let s = Settings::from_figment(Figment::from(Env::prefixed("FGTEST_FLAT_").split("__")))
        .expect("valid");
    assert_eq!(s.redis.timeout_ms, 750);
    assert_eq!(s.kafka.brokers, "k1:9092,k2:9092");
    assert_eq!(s.purchase.user_window_ms, 2500);
    assert_eq!(s.protect.max_outbox, 42);
    assert_eq!(s.consumer.max_rate, 7);
    assert_eq!(s.purchase.reserve_batch, 64, "a default");
}

/// The deployment files (infra/k8s, infra/docker) set only settings that exist: a
/// misspelt key would be ignored and the default used without a word.
#[test]
fn the_deployment_files_set_only_real_settings() {
    let defaults = serde_json::to_value(defaults()).expect("defaults serialize");
    // Read from the environment only, or settings without a default.
    let elsewhere = [
        "CONFIG",
        "KAFKA_DEBUG",
        "KAFKA_OPTIONS",
        "EDGE_SECRET_PREVIOUS",
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![root.join("infra/docker/Dockerfile")];
    let mut dirs = vec![root.join("infra/k8s")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("infra/k8s") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let mut seen = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let words = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
        for name in words.filter_map(|w| w.strip_prefix("FLASHGATE_")) {
            seen += 1;
            let key = name.to_lowercase();
            let known = elsewhere.contains(&name)
                || STACK_VARS.iter().any(|v| v.to_lowercase() == key)
                || key
                    .split("__")
                    .try_fold(&defaults, |at, part| at.get(part))
                    .is_some();
            assert!(
                known,
                "{}: FLASHGATE_{name} is not a setting",
                file.display()
            );
        }
    }
    assert!(seen > 5, "the deployment files set {seen} settings");
}

#[test]
fn a_previous_edge_secret_is_optional_and_held_to_the_same_rules() {
    let with = |previous: Option<&str>| {
        let mut f = Figment::new().merge(("edge_secret", "test-edge-secret-0123456789"));
        if let Some(p) = previous {
            f = f.merge(("edge_secret_previous", p));
        }
        Settings::from_figment(f).expect("valid").edge_keys()
    };
    assert_eq!(with(None).expect("one key").previous(), None);
    let ring = with(Some("old-edge-secret-9876543210")).expect("two keys");
    assert_eq!(ring.current(), b"test-edge-secret-0123456789");
    assert_eq!(
        ring.previous(),
        Some(b"old-edge-secret-9876543210".as_slice())
    );
    for weak in ["short", "change-me-edge-to-origin-hmac-secret"] {
        let err = with(Some(weak)).expect_err("weak").to_string();
        assert!(err.contains("FLASHGATE_EDGE_SECRET_PREVIOUS"), "{err}");
    }
}

#[test]
fn an_environment_is_a_short_lowercase_name() {
    let with = |env: &str| Settings::from_figment(Figment::new().merge(("environment", env)));
    assert_eq!(with("production").expect("valid").environment, "production");
    assert_eq!(
        Settings::from_figment(Figment::new())
            .expect("valid")
            .environment,
        "dev"
    );
    for bad in ["", "Production", "prod\nPOST", &"e".repeat(33)] {
        let err = with(bad).expect_err("invalid").to_string();
        assert!(err.contains("environment"), "{bad:?}: {err}");
    }
}

#[test]
fn bad_values_are_named() {
    let err = Settings::from_figment(Figment::new().merge(("listen", "nope")))
        .expect_err("invalid")
        .to_string();
    assert!(err.contains("listen"), "{err}");
}

#[test]
fn a_replay_window_shorter_than_the_skew_allows_is_refused() {
    let err = Settings::from_figment(Figment::new().merge(("replay_window_ms", 30_000)))
        .expect_err("replayable")
        .to_string();
    assert!(err.contains("replay_window_ms"), "{err}");
    assert!(Settings::from_figment(Figment::new().merge(("replay_window_ms", 60_000))).is_ok());
}

#[test]
fn a_replica_wait_needs_a_bounded_timeout() {
    let wait = |timeout: u64| {
        Settings::from_figment(
            Figment::new()
                .merge(("redis_wait_replicas", 1))
                .merge(("redis_wait_timeout_ms", timeout)),
        )
    };
    for bad in [0, rules::MAX_WAIT_TIMEOUT_MS + 1] {
        let err = wait(bad).expect_err("refused").to_string();
        assert!(err.contains("redis_wait_timeout_ms"), "{err}");
    }
    assert!(wait(rules::MAX_WAIT_TIMEOUT_MS).is_ok());
}

#[test]
fn strict_mode_needs_a_replica_to_wait_for() {
    let strict = |replicas: u32| {
        Settings::from_figment(
            Figment::new()
                .merge(("redis_wait_strict", true))
                .merge(("redis_wait_replicas", replicas)),
        )
    };
    let err = strict(0).expect_err("refused").to_string();
    assert!(err.contains("redis_wait_strict"), "{err}");
    assert!(strict(1).is_ok());
}

#[test]
fn the_dev_stacks_file_reads_as_key_value_lines() {
    let vars = parse_env_file(
        "EDGE_URL=http://127.0.0.1:8787\nAUTH_SECRET=abc=def\n# NOTE=x\n\n\
         REDIS_URL=redis://127.0.0.1:6390\n",
    );
    assert_eq!(vars.len(), 3, "{vars:?}");
    assert_eq!(vars["AUTH_SECRET"], "abc=def");
    assert_eq!(vars["REDIS_URL"], "redis://127.0.0.1:6390");
}

/// A prefix with braces would break the hash tag that keeps each event's keys in one
/// slot of a Redis Cluster.
#[test]
fn redis_cluster_settings() {
    assert!(
        !Settings::from_figment(Figment::new())
            .expect("valid")
            .redis
            .cluster
    );
    let s = Settings::from_figment(Figment::new().merge(("redis_cluster", true))).expect("valid");
    assert!(s.redis.cluster);
    for prefix in ["fg{x}:", "fg{", "fg}"] {
        let err = Settings::from_figment(Figment::new().merge(("key_prefix", prefix)))
            .expect_err(prefix)
            .to_string();
        assert!(err.contains("key_prefix"), "{err}");
    }
}
