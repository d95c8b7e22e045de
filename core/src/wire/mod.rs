//! The JSON bodies of the public contract (`shared/API.md`) and the one place that maps
//! each outcome to its status code, body and `Retry-After`.

use crate::gate::EventState;
use crate::room::settings::RoomSettings;
use crate::Millis;
use chrono::{DateTime, SecondsFormat};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

/// The friendly message of every "too busy" answer (429 and 503).
pub const BUSY_MESSAGE: &str = "活动火爆, 请稍后再试";
/// The message of a successful reservation.
pub const QUEUED_MESSAGE: &str = "抢购成功, 订单处理中";
/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 4096;

/// RFC 3339 UTC text of a unix-milliseconds instant.
pub fn fmt_time(ms: Millis) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Parses RFC 3339 text (any offset) to unix milliseconds.
pub fn parse_time(s: &str) -> Option<Millis> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// `GET /api/events/{event_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInfo {
    /// The event slug.
    pub event_id: String,
    /// Display name.
    pub name: String,
    /// Units put on sale.
    pub stock_total: u64,
    /// Units not yet reserved (may lag by about a second).
    pub stock_left: u64,
    /// Start, RFC 3339 UTC.
    pub starts_at: String,
    /// End, RFC 3339 UTC.
    pub ends_at: String,
    /// The answering server's clock, RFC 3339 UTC.
    pub server_time: String,
    /// upcoming, live, sold_out or ended.
    pub state: EventState,
    /// An operator paused the sale: purchases answer 503 `paused` until it resumes.
    #[serde(default)]
    pub paused: bool,
    /// The event's own room settings, absent when it has none (the edge's `ROOM_*` vars
    /// apply then).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "readable_room"
    )]
    pub room: Option<RoomSettings>,
}

/// Room settings this version cannot read (an origin's newer ones) count as none: the
/// event's info still reads, and the edge's defaults apply, rather than every request of
/// the event failing.
fn readable_room<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RoomSettings>, D::Error> {
    let room = Option::<Value>::deserialize(d)?;
    Ok(room.and_then(|r| serde_json::from_value(r).ok()))
}

/// `PUT /admin/events/{event_id}` body. Other fields are ignored (e.g. an event's own
/// info sent back), so clients may carry more than these.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventSpec {
    /// Display name, 1–200 characters.
    pub name: String,
    /// Units on sale.
    pub stock: u64,
    /// Start, RFC 3339.
    pub starts_at: String,
    /// End, RFC 3339, after the start.
    pub ends_at: String,
    /// The event's room settings (`RoomSettings`: missing fields default, unknown ones
    /// are refused); absent or null: none of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<Value>,
    /// How many stock buckets the stock is split into (`core::stock_buckets`), 1 to
    /// [`MAX_STOCK_BUCKETS`]; absent: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock_buckets: Option<u16>,
}

/// A validated [`EventSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEventSpec {
    /// Display name.
    pub name: String,
    /// Units on sale.
    pub stock: u64,
    /// Start.
    pub starts_at: Millis,
    /// End.
    pub ends_at: Millis,
    /// The event's own room settings, validated.
    pub room: Option<RoomSettings>,
    /// Its stock buckets, at least 1.
    pub stock_buckets: u16,
}

/// `Retry-After` of a paused sale's answer: a pause is an operator's decision, not a
/// moment's load, so shoppers are asked to come back in a while rather than at once.
pub const PAUSED_RETRY_SECS: u64 = 5;

/// Most stock buckets one event's stock may be split into.
pub const MAX_STOCK_BUCKETS: u16 = 16;

/// Largest stock one event may put on sale.
pub const MAX_STOCK: u64 = 100_000_000;

impl EventSpec {
    /// Checks the fields; the error is a human-readable reason.
    pub fn validate(&self) -> Result<ValidEventSpec, String> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err("name must be 1-200 characters".into());
        }
        if self.stock > MAX_STOCK {
            return Err(format!("stock must be at most {MAX_STOCK}"));
        }
        // A time must read back from the way it is shown (years 0000-9999 in UTC): the
        // edge reads the window from event info, and one it cannot read answers 503.
        let readable = |t: Millis| parse_time(&fmt_time(t)) == Some(t);
        let starts_at = parse_time(&self.starts_at)
            .filter(|t| readable(*t))
            .ok_or("starts_at must be RFC 3339, in years 0000-9999 UTC")?;
        let ends_at = parse_time(&self.ends_at)
            .filter(|t| readable(*t))
            .ok_or("ends_at must be RFC 3339, in years 0000-9999 UTC")?;
        if ends_at <= starts_at {
            return Err("ends_at must be after starts_at".into());
        }
        let stock_buckets = self.stock_buckets.unwrap_or(1);
        if !(1..=MAX_STOCK_BUCKETS).contains(&stock_buckets) {
            return Err(format!("stock_buckets must be 1-{MAX_STOCK_BUCKETS}"));
        }
        let room = self
            .room
            .as_ref()
            .map(RoomSettings::from_json)
            .transpose()?;
        Ok(ValidEventSpec {
            name: name.to_owned(),
            stock: self.stock,
            starts_at,
            ends_at,
            room,
            stock_buckets,
        })
    }
}

/// `POST /api/events/{event_id}/ticket`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TicketAnswer {
    /// The signed ticket, sent back as `X-Ticket`.
    pub ticket: String,
    /// First valid instant, RFC 3339 UTC.
    pub valid_from: String,
    /// Expiry, RFC 3339 UTC.
    pub expires_at: String,
}

/// The state of a shopper's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Reserved, on its way to the database.
    Queued,
    /// Written to the orders table.
    Confirmed,
    /// Could not be created; the unit went back to stock.
    Failed,
}

impl OrderStatus {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Queued => "queued",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Failed => "failed",
        }
    }

    /// Parses the wire word.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(OrderStatus::Queued),
            "confirmed" => Some(OrderStatus::Confirmed),
            "failed" => Some(OrderStatus::Failed),
            _ => None,
        }
    }
}

/// Every answer the shopper API gives, before it becomes HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 202: stock reserved.
    Queued {
        /// The new order.
        order_id: String,
    },
    /// 200: the user already holds an order for this event.
    AlreadyPurchased {
        /// The existing order.
        order_id: String,
    },
    /// 409: no stock left.
    SoldOut,
    /// 425: before the start.
    NotStarted {
        /// Start, RFC 3339 UTC.
        starts_at: String,
    },
    /// 410: after the end.
    Ended,
    /// 429: a limiter said no.
    RateLimited {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// 503 `paused`: an operator paused the sale; nothing is reserved until it resumes.
    Paused,
    /// 503: a dependency is down or a circuit is open.
    Busy {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// 200: the user's order.
    Order {
        /// queued, confirmed or failed.
        status: OrderStatus,
        /// The order.
        order_id: String,
    },
    /// 404 `{"status":"none"}`: the user has no order for this event.
    NoOrder,
    /// 404 at the order lookup of an event that does not exist: the user has no order
    /// there (`status: none`, as [`Outcome::NoOrder`]) because there is no such event
    /// (`error: event_not_found`, as on the other shopper paths).
    NoOrderNoEvent,
    /// 401: missing or bad JWT (or, at the origin, a bad edge signature).
    Unauthenticated,
    /// 403 with a reason code (ticket or bot verdict).
    Forbidden {
        /// Stable reason code.
        reason: String,
    },
    /// 404: no such event.
    EventNotFound,
    /// 409 `event_started`: an admin tried to change an event that has started.
    EventStarted,
    /// 409 `event_not_started`: an admin tried to end an event that has not started.
    EventNotStarted,
    /// 404: no such path.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 413: body over [`MAX_BODY_BYTES`].
    PayloadTooLarge,
    /// 408: the body did not arrive in time (a slow or stalled client).
    RequestTimeout,
    /// 415: body is not JSON.
    UnsupportedMediaType,
    /// 400 with a stable code and a reason.
    BadRequest {
        /// Stable code, e.g. `invalid_json`, `invalid_body`.
        error: String,
        /// Human reason.
        message: String,
    },
}

/// An outcome as HTTP: status, JSON body and optional `Retry-After` seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// JSON body.
    pub body: Value,
    /// `Retry-After`, seconds.
    pub retry_after_secs: Option<u64>,
}

impl Outcome {
    /// The HTTP answer of this outcome.
    pub fn answer(&self) -> Answer {
        let plain = |status, body| Answer {
            status,
            body,
            retry_after_secs: None,
        };
        let err = |status, code: &str, message: &str| {
            plain(status, json!({ "error": code, "message": message }))
        };
        match self {
            Outcome::Queued { order_id } => plain(
                202,
                json!({"status": "queued", "order_id": order_id, "message": QUEUED_MESSAGE}),
            ),
            Outcome::AlreadyPurchased { order_id } => plain(
                200,
                json!({"status": "already_purchased", "order_id": order_id,
                       "message": "您已抢购成功, 请勿重复提交"}),
            ),
            Outcome::SoldOut => plain(409, json!({"status": "sold_out", "message": "已售罄"})),
            Outcome::NotStarted { starts_at } => plain(
                425,
                json!({"status": "not_started", "starts_at": starts_at, "message": "活动尚未开始"}),
            ),
            Outcome::Ended => plain(410, json!({"status": "ended", "message": "活动已结束"})),
            Outcome::RateLimited { retry_after_secs } => Answer {
                status: 429,
                body: json!({"status": "rate_limited", "message": BUSY_MESSAGE}),
                retry_after_secs: Some((*retry_after_secs).max(1)),
            },
            Outcome::Paused => Answer {
                status: 503,
                body: json!({"status": "paused", "message": "活动暂停中, 请稍后再试"}),
                retry_after_secs: Some(PAUSED_RETRY_SECS),
            },
            Outcome::Busy { retry_after_secs } => Answer {
                status: 503,
                body: json!({"status": "busy", "message": BUSY_MESSAGE}),
                retry_after_secs: Some((*retry_after_secs).max(1)),
            },
            Outcome::Order { status, order_id } => plain(
                200,
                json!({"status": status.as_str(), "order_id": order_id,
                       "message": order_message(*status)}),
            ),
            Outcome::NoOrder => plain(404, json!({"status": "none", "message": "暂无订单"})),
            Outcome::NoOrderNoEvent => plain(
                404,
                json!({"status": "none", "error": "event_not_found", "message": "活动不存在"}),
            ),
            Outcome::Unauthenticated => err(401, "unauthenticated", "请先登录"),
            Outcome::Forbidden { reason } => plain(
                403,
                json!({"error": "forbidden", "reason": reason, "message": "请求被拒绝"}),
            ),
            Outcome::EventNotFound => err(404, "event_not_found", "活动不存在"),
            Outcome::EventStarted => err(409, "event_started", "活动已开始, 不能修改"),
            Outcome::EventNotStarted => {
                err(409, "event_not_started", "活动尚未开始, 请修改活动时间")
            }
            Outcome::NotFound => err(404, "not_found", "页面不存在"),
            Outcome::MethodNotAllowed => err(405, "method_not_allowed", "不支持的请求方法"),
            Outcome::PayloadTooLarge => err(413, "payload_too_large", "请求体过大 (最多 4 KiB)"),
            Outcome::RequestTimeout => err(408, "request_timeout", "请求超时, 请重试"),
            Outcome::UnsupportedMediaType => err(
                415,
                "unsupported_media_type",
                "请使用 Content-Type: application/json",
            ),
            Outcome::BadRequest { error, message } => err(400, error, message),
        }
    }
}

fn order_message(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Queued => "订单处理中",
        OrderStatus::Confirmed => "订单已确认",
        OrderStatus::Failed => "订单创建失败, 库存已退回",
    }
}

/// Checks a request body the way every shopper POST does: at most [`MAX_BODY_BYTES`],
/// empty or a JSON object. A body that says it is something else than JSON is refused
/// (415); one that says nothing is read as JSON, since every body here is JSON.
pub fn check_json_body(content_type: Option<&str>, body: &[u8]) -> Result<Value, Outcome> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Outcome::PayloadTooLarge);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let is_json = content_type
        .map(|ct| ct.split(';').next().unwrap_or("").trim())
        .is_none_or(|m| {
            m.eq_ignore_ascii_case("application/json")
                || (m.len() > 5 && m.as_bytes()[m.len() - 5..].eq_ignore_ascii_case(b"+json"))
        });
    if !is_json {
        return Err(Outcome::UnsupportedMediaType);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(bad(
            "invalid_body",
            "请求体须为 JSON 对象 (body must be a JSON object)",
        )),
        Err(_) => Err(bad(
            "invalid_json",
            "请求体不是合法的 JSON (body is not valid JSON)",
        )),
    }
}

/// A 400 outcome.
pub fn bad(error: &str, message: &str) -> Outcome {
    Outcome::BadRequest {
        error: error.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests;
