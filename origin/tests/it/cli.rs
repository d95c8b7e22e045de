//! The `flashgate` command as an operator uses it.

use crate::helpers::*;
use figment::Figment;
use flashgate_core::keyring::KeyRing;
use std::process::{Command, Output};

fn flashgate(args: &[&str], env: &[(&str, String)]) -> Output {
    command(args, env).output().expect("flashgate runs")
}

/// The command, with none of the caller's settings.
fn command(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flashgate"));
    cmd.args(args).env("RUST_LOG", "off");
    let stack_var =
        |k: &str| flashgate_origin::config::STACK_VARS.contains(&k) || k == "ORIGIN_URL";
    for (k, _) in std::env::vars().filter(|(k, _)| {
        (k.starts_with("FLASHGATE_") && !k.starts_with("FLASHGATE_TEST_")) || stack_var(k)
    }) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The token that `users` (a `flashgate users --prefix <prefix> …` command) wrote for its
/// first user, `<prefix>1`.
fn first_token(mut users: Command, prefix: &str) -> String {
    let out = users.output().expect("flashgate runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{prefix}1,")).map(str::to_owned))
        .unwrap_or_else(|| panic!("a row for {prefix}1"))
}

fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(err.lines().count(), 1, "one clear line, got:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn secrets() -> Vec<(&'static str, String)> {
    vec![
        ("FLASHGATE_EDGE_SECRET", EDGE_SECRET.into()),
        ("FLASHGATE_ADMIN_TOKEN", ADMIN_TOKEN.into()),
    ]
}

#[test]
fn users_into_a_pipe_that_closes_early_is_not_an_error() {
    // `flashgate users --count 200000 | head -3`: the reader takes three lines and goes.
    let mut child = command(
        &["users", "--count", "200000", "--out", "-"],
        &[(
            "FLASHGATE_AUTH_SECRET",
            "a-test-auth-secret-of-some-length".into(),
        )],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("flashgate runs");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).expect("a line");
    assert_eq!(first.trim(), "userId,authToken");
    drop(stdout);
    let out = child.wait_with_output().expect("flashgate ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "status {:?}, stderr: {err}",
        out.status
    );
    assert!(err.trim().is_empty(), "nothing on stderr, got: {err}");
}

#[test]
fn bad_start_up_configuration_stops_with_one_clear_line() {
    let redis = ("FLASHGATE_REDIS_URL", service("FLASHGATE_TEST_REDIS_URL"));
    let listen = ("FLASHGATE_LISTEN", format!("127.0.0.1:{}", free_port()));

    let missing = flashgate(
        &["serve"],
        &[
            redis.clone(),
            listen.clone(),
            ("FLASHGATE_ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ],
    );
    assert!(one_line_error(&missing).contains("FLASHGATE_EDGE_SECRET (or EDGE_SECRET) is not set"));

    // The example Secret's values, or a guessable one, are refused before anything starts.
    for (value, says) in [
        ("change-me-edge-to-origin-hmac-secret", "example value"),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "too easy to guess"),
    ] {
        let mut env = secrets();
        env.retain(|(k, _)| *k != "FLASHGATE_EDGE_SECRET");
        env.extend([
            ("FLASHGATE_EDGE_SECRET", value.to_owned()),
            redis.clone(),
            listen.clone(),
        ]);
        let err = one_line_error(&flashgate(&["serve"], &env));
        assert!(
            err.contains("FLASHGATE_EDGE_SECRET") && err.contains(says),
            "{err}"
        );
    }

    let mut env = secrets();
    env.push((
        "FLASHGATE_REDIS_URL",
        format!("redis://127.0.0.1:{}", free_port()),
    ));
    env.push(listen.clone());
    assert!(one_line_error(&flashgate(&["serve"], &env)).contains("cannot reach Redis"));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut env = secrets();
    env.push(redis.clone());
    env.push((
        "FLASHGATE_LISTEN",
        taken.local_addr().expect("addr").to_string(),
    ));
    assert!(one_line_error(&flashgate(&["serve"], &env)).contains("cannot listen on"));

    let mut env = secrets();
    env.push(("FLASHGATE_LISTEN", "not-an-address".into()));
    assert!(one_line_error(&flashgate(&["serve"], &env))
        .to_lowercase()
        .contains("listen"));
    let mut env = secrets();
    env.push(redis.clone());
    env.push(listen.clone());
    env.push(("FLASHGATE_KAFKA_OPTIONS", "linger.ms=5;oops".into()));
    let err = one_line_error(&flashgate(&["serve"], &env));
    assert!(
        err.contains("FLASHGATE_KAFKA_OPTIONS: entry 2 is not key=value"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_env_names_work_as_in_dev_env() {
    // What `set -a; . .dev/env; set +a` gives a shell: the contract's names, no prefix.
    const AUTH_SECRET: &str = "test-auth-secret-0123456789";
    let app = spawn_app(Figment::new()).await;
    let token = |env: &[(&str, String)]| {
        first_token(
            command(&["users", "--count", "2", "--prefix", "envuser"], env),
            "envuser",
        )
    };
    let claims = flashgate_core::jwt::verify(
        &token(&[("AUTH_SECRET", AUTH_SECRET.into())]),
        &KeyRing::single(AUTH_SECRET.as_bytes()),
        now_ms(),
    )
    .expect("a token signed with AUTH_SECRET");
    assert_eq!(claims.sub.as_str(), "envuser1");
    // FLASHGATE_* wins over the unprefixed name.
    const OTHER: &str = "test-other-secret-0123456789";
    let both = [
        ("AUTH_SECRET", AUTH_SECRET.to_owned()),
        ("FLASHGATE_AUTH_SECRET", OTHER.to_owned()),
    ];
    assert!(flashgate_core::jwt::verify(
        &token(&both),
        &KeyRing::single(OTHER.as_bytes()),
        now_ms()
    )
    .is_ok());
    let stats = flashgate(
        &["event", "stats", "no-such-event"],
        &[
            ("ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("ORIGIN_URL", app.base.clone()),
        ],
    );
    // The origin was reached and the token accepted: the event does not exist.
    let err = one_line_error(&stats);
    assert!(err.contains("404"), "{err}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_put_and_stats_through_the_admin_api() {
    let app = spawn_app(Figment::new()).await;
    let env = vec![("FLASHGATE_ADMIN_TOKEN", ADMIN_TOKEN.to_owned())];
    let starts = rfc3339(now_ms() + 60_000);
    let ends = rfc3339(now_ms() + 120_000);
    let put = flashgate(
        &[
            "event",
            "put",
            "cli-event",
            "--name",
            "Phone",
            "--stock",
            "12",
            "--starts-at",
            &starts,
            "--ends-at",
            &ends,
            "--origin",
            &app.base,
        ],
        &env,
    );
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let stats = flashgate(
        &["event", "stats", "cli-event", "--origin", &app.base],
        &env,
    );
    assert!(stats.status.success());
    let body: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("json");
    assert_eq!(
        (body["stock_total"].as_u64(), body["stock_left"].as_u64()),
        (Some(12), Some(12))
    );
    let bad = flashgate(
        &[
            "event",
            "put",
            "cli-event",
            "--name",
            "Phone",
            "--stock",
            "1",
            "--starts-at",
            "soon",
            "--ends-at",
            &ends,
            "--origin",
            &app.base,
        ],
        &env,
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stdout).contains("invalid_event"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_where_dev_up_wrote_its_env_the_stack_names_come_from_that_file() {
    // `target/debug/flashgate users …` right after `./dev up`, in the checkout, with
    // nothing exported: the secret is the stack's own.
    const FROM_FILE: &str = "test-file-secret-0123456789";
    const FROM_ENV: &str = "test-env-secret-0123456789";
    let dir = std::env::temp_dir().join(unique("fg-devenv-"));
    std::fs::create_dir_all(dir.join(".dev")).expect("dir");
    let app = spawn_app(Figment::new()).await;
    std::fs::write(
        dir.join(".dev/env"),
        format!(
            "EDGE_URL=http://127.0.0.1:1\nORIGIN_URL={}\nAUTH_SECRET={FROM_FILE}\n\
             ADMIN_TOKEN={ADMIN_TOKEN}\nEDGE_SECRET={EDGE_SECRET}\n",
            app.base
        ),
    )
    .expect("env file");
    let token_in_checkout = |env: &[(&str, String)]| {
        let mut users = command(&["users", "--count", "1", "--prefix", "fileuser"], env);
        users.current_dir(&dir);
        first_token(users, "fileuser")
    };
    let verify = |token: &str, secret: &str| {
        flashgate_core::jwt::verify(token, &KeyRing::single(secret.as_bytes()), now_ms()).is_ok()
    };
    assert!(verify(&token_in_checkout(&[]), FROM_FILE));
    // The environment wins over the file.
    assert!(verify(
        &token_in_checkout(&[("AUTH_SECRET", FROM_ENV.into())]),
        FROM_ENV
    ));
    // `flashgate event` finds the origin and its admin token there too: the origin was
    // reached and the token accepted, the event does not exist.
    let stats = command(&["event", "stats", "no-such-event"], &[])
        .current_dir(&dir)
        .output()
        .expect("flashgate runs");
    let err = one_line_error(&stats);
    assert!(err.contains("404"), "{err}");
    // Elsewhere, FLASHGATE_DEV_DIR names the stack's directory, as for ./dev.
    let mut users = command(
        &["users", "--count", "1", "--prefix", "fileuser"],
        &[("FLASHGATE_DEV_DIR", dir.join(".dev").display().to_string())],
    );
    users.current_dir(std::env::temp_dir());
    assert!(verify(&first_token(users, "fileuser"), FROM_FILE));
    // The services never read it: a deployment started in a checkout takes nothing from it.
    let serve = command(&["serve"], &[])
        .current_dir(&dir)
        .output()
        .expect("runs");
    let err = one_line_error(&serve);
    assert!(err.contains("EDGE_SECRET"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    app.stop().await;
}
