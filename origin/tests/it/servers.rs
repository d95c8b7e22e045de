//! Servers of a test's own (Redis, the broker, MariaDB) that it can stop, kill and
//! restart, and child processes killed when dropped.

use crate::fixtures::{service, unique, ADMIN_TOKEN, EDGE_SECRET};
use crate::netns::Netns;
use std::time::Duration;

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A server process of the test's own (Redis or the broker) that it can stop and restart.
pub struct OwnServer {
    /// Where it listens: loopback, or its namespace's address (see `crate::netns`).
    pub host: std::net::Ipv4Addr,
    pub port: u16,
    dir: std::path::PathBuf,
    program: String,
    args: Vec<String>,
    child: Option<std::process::Child>,
}

impl OwnServer {
    /// A Redis with AOF on (fsync on every write), in its own temp dir.
    pub fn redis() -> Self {
        Self::redis_with(false, &[])
    }

    /// A Redis that speaks only TLS, with this certificate and key.
    pub fn redis_tls(cert: &std::path::Path, key: &std::path::Path) -> Self {
        let (cert, key) = (cert.display(), key.display());
        Self::redis_with(
            true,
            &[
                "--tls-cert-file".into(),
                cert.to_string(),
                "--tls-key-file".into(),
                key.to_string(),
                "--tls-ca-cert-file".into(),
                cert.to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
        )
    }

    /// A Redis with AOF on, and these arguments besides.
    pub fn redis_with(tls: bool, extra: &[String]) -> Self {
        Self::redis_in(None, tls, extra)
    }

    /// A [`OwnServer::redis_with`] inside `ns` (on loopback without one).
    pub fn redis_in(ns: Option<&Netns>, tls: bool, extra: &[String]) -> Self {
        let host = ns.map_or(std::net::Ipv4Addr::LOCALHOST, Netns::inner);
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("fg-redis-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (plain, tls_port) = if tls {
            (0, port.to_string())
        } else {
            (port, "0".to_owned())
        };
        let mut args = [
            "--bind",
            &host.to_string(),
            // Reached from the root namespace, not from loopback; nothing else can.
            "--protected-mode",
            if ns.is_some() { "no" } else { "yes" },
            "--port",
            &plain.to_string(),
            "--tls-port",
            &tls_port,
            "--dir",
            &dir.to_string_lossy(),
            "--appendonly",
            "yes",
            // Tests kill -9 their Redis and count what it kept: with everysec a busy disk
            // can hold an acknowledged write back for up to 2 s, and the kill loses it.
            "--appendfsync",
            "always",
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend_from_slice(extra);
        Self::start_in(ns, host, port, dir, "redis-server".into(), args)
    }

    /// A tansu broker with sqlite storage, in its own temp dir.
    pub fn broker() -> Self {
        Self::broker_in(None)
    }

    /// A [`OwnServer::broker`] inside `ns` (on loopback without one).
    pub fn broker_in(ns: Option<&Netns>) -> Self {
        let host = ns.map_or(std::net::Ipv4Addr::LOCALHOST, Netns::inner);
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("fg-kafka-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let url = format!("tcp://{host}:{port}");
        let args = [
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "sqlite://tansu.db",
        ]
        .map(str::to_owned)
        .to_vec();
        Self::start_in(
            ns,
            host,
            port,
            dir,
            service("FLASHGATE_TEST_TANSU_BIN"),
            args,
        )
    }

    /// A MariaDB with its own data dir; `url()` names database `flashgate`.
    pub fn mariadb() -> Self {
        Self::mariadb_with(&[])
    }

    /// A [`OwnServer::mariadb`] started with these extra server options.
    pub fn mariadb_with(extra: &[String]) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("fg-mariadb-"));
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ok = std::process::Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", data.display()))
            .output()
            .expect("mariadb-install-db runs");
        assert!(
            ok.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&ok.stdout),
            String::from_utf8_lossy(&ok.stderr)
        );
        let args = vec![
            "--no-defaults".to_owned(),
            "--user=root".to_owned(),
            format!("--datadir={}", data.display()),
            format!("--socket={}", dir.join("mysqld.sock").display()),
            format!("--pid-file={}", dir.join("mysqld.pid").display()),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--skip-name-resolve".to_owned(),
        ];
        let args = [args, extra.to_vec()].concat();
        let s = Self::start(port, dir, "mariadbd".into(), args);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !std::process::Command::new("mariadb")
            .args([
                "--no-defaults",
                "-h127.0.0.1",
                &format!("-P{port}"),
                "-uroot",
                "-e",
                "CREATE DATABASE IF NOT EXISTS flashgate",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|st| st.success())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "mariadb did not answer"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    /// The database URL of a [`OwnServer::mariadb`].
    pub fn mysql_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/flashgate", self.port)
    }

    fn start(port: u16, dir: std::path::PathBuf, program: String, args: Vec<String>) -> Self {
        let host = std::net::Ipv4Addr::LOCALHOST;
        Self::start_in(None, host, port, dir, program, args)
    }

    /// Starts `program` inside `ns` (with `ip netns exec`, which becomes the program, so
    /// that its pid is the server's) or, without one, here.
    fn start_in(
        ns: Option<&Netns>,
        host: std::net::Ipv4Addr,
        port: u16,
        dir: std::path::PathBuf,
        program: String,
        args: Vec<String>,
    ) -> Self {
        let (program, args) = match ns {
            Some(ns) => {
                let (ip, mut exec) = ns.exec(&program);
                exec.extend(args);
                (ip, exec)
            }
            None => (program, args),
        };
        let mut s = Self {
            host,
            port,
            dir,
            program,
            args,
            child: None,
        };
        s.restart();
        s
    }

    /// Starts the server again (same data dir) and waits for its port.
    pub fn restart(&mut self) {
        let child = std::process::Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("server starts");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect((self.host, self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not open its port",
                self.program
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Freezes the server (SIGSTOP) or lets it go on (SIGCONT): `kill -<signal>`.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal} {pid}");
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A child process that is killed (SIGKILL) when dropped, so a failing test leaks nothing.
pub struct Killed(pub std::process::Child);

impl Killed {
    /// kill -9 and reap.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `flashgate serve` as a process of its own, on a free port, with `settings`' Redis,
/// broker, topic, key prefix and secrets, plus `extra` variables.
pub fn serve_binary(
    settings: &flashgate_origin::config::Settings,
    extra: &[(&str, &str)],
) -> (u16, Killed) {
    use secrecy::ExposeSecret;
    let port = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_flashgate"))
        .arg("serve")
        .env("FLASHGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("FLASHGATE_REDIS_URL", settings.redis.url.expose_secret())
        .env("FLASHGATE_KAFKA_BROKERS", &settings.kafka.brokers)
        .env("FLASHGATE_ORDERS_TOPIC", &settings.kafka.orders_topic)
        .env("FLASHGATE_KEY_PREFIX", &settings.redis.key_prefix)
        .env("FLASHGATE_EDGE_SECRET", EDGE_SECRET)
        .env("FLASHGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .envs(extra.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("flashgate serve starts");
    (port, Killed(child))
}
