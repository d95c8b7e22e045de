//! Kafka plumbing shared by the relay and the consumer: client configs, the orders
//! topic, and the order message.

mod topic;

pub use topic::{ensure_topic, ensure_topic_with, Replication, TopicSpec};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One reservation on its way to the orders table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderMessage {
    /// The order (unique; the consumer's idempotency key).
    pub order_id: String,
    /// The event.
    pub event_id: String,
    /// The buyer.
    pub user_id: String,
    /// When stock was reserved, unix milliseconds.
    pub reserved_at: i64,
    /// The room position the edge admitted the purchase at; absent without the room (and
    /// in messages of relays that predate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_position: Option<u64>,
    /// Which of the event's units the order holds (`core::fence`); absent in messages of
    /// relays that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_no: Option<u64>,
    /// The network of the buyer's client as the edge signed it (`core::sign::client_net`);
    /// absent where the edge knew no address (and in messages of relays that predate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_net: Option<String>,
}

/// A client config for `brokers`.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("socket.timeout.ms", "5000")
        .set("log_level", "4");
    // librdkafka's own debug contexts (e.g. "cgrp,fetch") for diagnosing a broker.
    if let Some(debug) = std::env::var("FLASHGATE_KAFKA_DEBUG")
        .ok()
        .filter(|d| !d.is_empty())
    {
        c.set("debug", debug).set("log_level", "7");
    }
    // Operator's librdkafka properties (TLS, SASL, tuning) over the defaults above and
    // under each client's own settings; checked at start-up by `Settings::load`.
    if let Ok(Ok(options)) = std::env::var(OPTIONS_VAR).map(|v| parse_options(&v)) {
        for (key, value) in options {
            c.set(key, value);
        }
    }
    c
}

/// Extra librdkafka properties for every client: `key=value` pairs separated by `;`
/// (values may hold commas, as lists do), e.g.
/// `security.protocol=SASL_SSL;sasl.mechanisms=PLAIN;debug=cgrp,fetch`.
pub const OPTIONS_VAR: &str = "FLASHGATE_KAFKA_OPTIONS";

/// Parses [`OPTIONS_VAR`]. A bad entry is named by its position, not echoed: it may hold
/// a secret.
pub fn parse_options(value: &str) -> anyhow::Result<Vec<(String, String)>> {
    value
        .split(';')
        .map(str::trim)
        .enumerate()
        .filter(|(_, e)| !e.is_empty())
        .map(|(i, entry)| match entry.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => anyhow::bail!("{OPTIONS_VAR}: entry {} is not key=value", i + 1),
        })
        .collect()
}

/// Orders per message the relay packs by default (`relay_pack`).
pub const DEFAULT_PACK: usize = 16;
/// Most orders one message may pack.
pub const MAX_PACK: usize = 256;

/// One message of the orders topic as the relay sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// Its first order id.
    pub key: String,
    /// A JSON array of order objects (a pack), or the single order object.
    pub payload: Vec<u8>,
    /// How many orders it carries: the next `len` of the orders given to [`pack_orders`].
    pub len: usize,
}

/// The messages that carry `orders`, in order: one per `pack` orders (a JSON array, or
/// with `pack` 1 the single order object), keyed by its first order id. Packing spares the
/// broker and both clients a per-message cost for every order (docs/benchmarks.md).
pub fn pack_orders(orders: &[OrderMessage], pack: usize) -> Vec<Packed> {
    let pack = pack.clamp(1, MAX_PACK);
    orders
        .chunks(pack)
        .map(|chunk| {
            let payload = if pack == 1 {
                serde_json::to_vec(&chunk[0])
            } else {
                serde_json::to_vec(chunk)
            };
            Packed {
                key: chunk[0].order_id.clone(),
                payload: payload.unwrap_or_default(),
                len: chunk.len(),
            }
        })
        .collect()
}

/// The orders a message carries, each as its raw JSON value (a reader checks each one, so
/// a bad order does not take its pack with it): one for an object, every element of an
/// array. `None` when the payload is neither.
pub fn unpack(payload: &[u8]) -> Option<Vec<serde_json::Value>> {
    match serde_json::from_slice(payload).ok()? {
        serde_json::Value::Array(items) => Some(items),
        one @ serde_json::Value::Object(_) => Some(vec![one]),
        _ => None,
    }
}

/// Produces `orders` to `topic` with an idempotent producer, packed as the relay packs
/// them; returns how many orders the broker acknowledged.
pub async fn publish(brokers: &str, topic: &str, orders: &[OrderMessage]) -> anyhow::Result<usize> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = client_config(brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .context("cannot create Kafka producer")?;
    let mut sent = 0;
    for m in pack_orders(orders, DEFAULT_PACK) {
        producer
            .send(
                FutureRecord::to(topic)
                    .key(m.key.as_bytes())
                    .payload(&m.payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("cannot produce to {topic}: {e}"))?;
        sent += m.len;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(i: usize) -> OrderMessage {
        OrderMessage {
            order_id: format!("o{i}"),
            event_id: "e".into(),
            user_id: format!("u{i}"),
            reserved_at: 1,
            room_position: None,
            unit_no: None,
            client_net: None,
        }
    }

    #[test]
    fn packs_carry_every_order_once_and_unpack_to_them() {
        let orders: Vec<OrderMessage> = (0..5).map(order).collect();
        let packed = pack_orders(&orders, 2);
        let keys: Vec<(&str, usize)> = packed.iter().map(|m| (m.key.as_str(), m.len)).collect();
        assert_eq!(keys, [("o0", 2), ("o2", 2), ("o4", 1)]);
        let back: Vec<OrderMessage> = packed
            .iter()
            .flat_map(|m| unpack(&m.payload).expect("a pack"))
            .map(|v| serde_json::from_value(v).expect("an order"))
            .collect();
        assert_eq!(back, orders);
        // One per message: the plain object, as before packs.
        let single = pack_orders(&orders[..1], 1);
        assert_eq!(
            single[0].payload,
            serde_json::to_vec(&orders[0]).expect("json")
        );
        assert_eq!(unpack(&single[0].payload).map(|v| v.len()), Some(1));
        assert_eq!(unpack(b"7"), None);
        assert_eq!(unpack(b"{not json"), None);
    }

    #[test]
    fn a_room_position_travels_only_when_there_is_one() {
        let plain = serde_json::to_value(order(1)).expect("json");
        assert!(plain.get("room_position").is_none(), "{plain}");
        let admitted = OrderMessage {
            room_position: Some(7),
            ..order(1)
        };
        let text = serde_json::to_string(&admitted).expect("json");
        assert!(text.contains(r#""room_position":7"#), "{text}");
        assert_eq!(
            serde_json::from_str::<OrderMessage>(&text).expect("read back"),
            admitted
        );
        // A message of a relay that predates positions still reads.
        let old: OrderMessage = serde_json::from_str(
            r#"{"order_id":"o1","event_id":"e","user_id":"u1","reserved_at":1}"#,
        )
        .expect("an older message");
        assert_eq!(old, order(1));
    }

    #[test]
    fn options_are_key_value_pairs() {
        let parsed =
            parse_options(" security.protocol=SASL_SSL; sasl.password=a=b ;debug=cgrp,fetch;")
                .expect("valid");
        assert_eq!(
            parsed,
            vec![
                ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
                ("sasl.password".to_owned(), "a=b".to_owned()),
                ("debug".to_owned(), "cgrp,fetch".to_owned()),
            ]
        );
        assert!(parse_options("").expect("empty").is_empty());
        assert!(parse_options("=x").is_err());
        let err = parse_options("linger.ms=5;sasl.password").expect_err("no value");
        assert_eq!(
            err.to_string(),
            "FLASHGATE_KAFKA_OPTIONS: entry 2 is not key=value"
        );
    }
}
