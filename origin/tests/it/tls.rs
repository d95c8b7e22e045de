//! TLS to the services a deployment reaches over the network, as managed services require:
//! Redis (`rediss://`), MariaDB/MySQL (`ssl-mode`), and the broker's clients
//! (`security.protocol=ssl` or `SASL_SSL` in `FLASHGATE_KAFKA_OPTIONS`).

use crate::helpers::*;
use std::path::PathBuf;

/// A self-signed certificate for 127.0.0.1 and its key, in a temp dir of their own.
struct Certificate {
    dir: PathBuf,
}

impl Certificate {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("fg-tls-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
            ])
            .current_dir(&dir)
            .output()
            .expect("openssl runs");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        Self { dir }
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn redis_over_tls() {
    let tls = Certificate::new();
    let redis = OwnServer::redis_tls(&tls.cert(), &tls.key());
    // `#insecure`: the test's certificate is its own, not signed by a known authority.
    let url = format!("rediss://127.0.0.1:{}/#insecure", redis.port);
    let store = flashgate_origin::redis::Store::connect(&url, &unique("tls:"))
        .await
        .expect("the store connects over TLS");
    store.ping().await.expect("and Redis answers");
    // The same port without TLS is refused: the connection above did speak TLS.
    let plain = format!("redis://127.0.0.1:{}", redis.port);
    let refused = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        flashgate_origin::redis::Store::connect(&plain, &unique("tls:")),
    )
    .await;
    assert!(!matches!(refused, Ok(Ok(_))), "plain TCP to a TLS port");
}

#[tokio::test]
async fn mariadb_over_tls() {
    let tls = Certificate::new();
    let db = OwnServer::mariadb_with(&[
        format!("--ssl-cert={}", tls.cert().display()),
        format!("--ssl-key={}", tls.key().display()),
    ]);
    let url = format!("{}?ssl-mode=required", db.mysql_url());
    let pool = flashgate_origin::db::connect(&url)
        .await
        .expect("connects over TLS and migrates");
    let (_, cipher): (String, String) = sqlx::query_as("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .fetch_one(&pool)
        .await
        .expect("status");
    assert!(!cipher.is_empty(), "the session is not encrypted");
}

#[test]
fn kafka_clients_are_built_with_tls() {
    use rdkafka::producer::BaseProducer;
    for protocol in ["ssl", "sasl_ssl"] {
        let mut config = flashgate_origin::kafka::client_config("127.0.0.1:9");
        config.set("security.protocol", protocol);
        if protocol == "sasl_ssl" {
            config
                .set("sasl.mechanisms", "PLAIN")
                .set("sasl.username", "u")
                .set("sasl.password", "p");
        }
        let made: Result<BaseProducer, _> = config.create();
        assert!(made.is_ok(), "{protocol}: {:?}", made.err());
    }
}
