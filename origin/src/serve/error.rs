//! The one error type of the HTTP surface: a contract outcome, or a failed dependency
//! answered as 503 busy (never the internal error's text) and logged once by the router's
//! middleware.

use axum::body::Bytes;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use flashgate_core::ids::OrderId;
use flashgate_core::wire::{Answer, Outcome};
use std::sync::LazyLock;

/// An answer that is not a success.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// A contract outcome (4xx, or a deliberate 503).
    Outcome(Outcome),
    /// Redis or Kafka failed or timed out: logged, answered 503 busy.
    Dependency(&'static str, anyhow::Error),
}

/// A Redis call on the request path that failed, timed out or met an open circuit.
#[derive(Debug)]
pub(crate) struct RedisFailed(pub(crate) anyhow::Error);

impl From<RedisFailed> for ApiError {
    fn from(e: RedisFailed) -> Self {
        ApiError::Dependency("redis", e.0)
    }
}

/// A dependency's failure, carried on its 503 answer to the middleware that logs and
/// counts it once (`router::count_requests`).
#[derive(Debug, Clone)]
pub(crate) struct DependencyFailed {
    /// `redis`, `kafka`, …
    pub(crate) which: &'static str,
    /// The cause, for the log (never for the client).
    pub(crate) cause: String,
}

impl From<Outcome> for ApiError {
    fn from(o: Outcome) -> Self {
        ApiError::Outcome(o)
    }
}

/// An answer rendered once.
struct Rendered {
    status: StatusCode,
    body: &'static [u8],
    retry_after_secs: Option<u64>,
}

impl Rendered {
    fn of(outcome: &Outcome) -> Self {
        let answer = outcome.answer();
        Rendered {
            status: status_code(answer.status),
            body: serde_json::to_vec(&answer.body)
                .expect("a JSON value")
                .leak(),
            retry_after_secs: answer.retry_after_secs,
        }
    }
}

/// The answers a storm repeats word for word (sold out; rate limited or busy with a
/// one-second retry), rendered once instead of once per request.
fn storm_answer(outcome: &Outcome) -> Option<&'static Rendered> {
    static SOLD_OUT: LazyLock<Rendered> = LazyLock::new(|| Rendered::of(&Outcome::SoldOut));
    static RATE_LIMITED: LazyLock<Rendered> = LazyLock::new(|| {
        Rendered::of(&Outcome::RateLimited {
            retry_after_secs: 1,
        })
    });
    static BUSY: LazyLock<Rendered> = LazyLock::new(|| {
        Rendered::of(&Outcome::Busy {
            retry_after_secs: 1,
        })
    });
    match outcome {
        Outcome::SoldOut => Some(&SOLD_OUT),
        Outcome::RateLimited {
            retry_after_secs: 1,
        } => Some(&RATE_LIMITED),
        Outcome::Busy {
            retry_after_secs: 1,
        } => Some(&BUSY),
        _ => None,
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A 202's body, rendered once around the place of its order id: every reservation
/// answers it, and the order id is all that differs.
struct Queued {
    before: &'static [u8],
    after: &'static [u8],
}

impl Queued {
    fn get() -> &'static Queued {
        static QUEUED: LazyLock<Queued> = LazyLock::new(|| {
            const MARK: &str = "order-id-here";
            let body = Rendered::of(&Outcome::Queued {
                order_id: MARK.into(),
            })
            .body;
            let at = body
                .windows(MARK.len())
                .position(|w| w == MARK.as_bytes())
                .expect("the order id in the 202's body");
            Queued {
                before: &body[..at],
                after: &body[at + MARK.len()..],
            }
        });
        &QUEUED
    }

    /// The body for `order_id`, when it is a valid order id (whose characters need no
    /// JSON escaping).
    fn body(&self, order_id: &str) -> Option<Vec<u8>> {
        OrderId::is_valid(order_id).then(|| [self.before, order_id.as_bytes(), self.after].concat())
    }
}

fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let json = HeaderValue::from_static("application/json");
    (status, [(header::CONTENT_TYPE, json)], body.into()).into_response()
}

/// Renders an outcome as an HTTP response.
pub(crate) fn respond(outcome: &Outcome) -> Response {
    if let Outcome::Queued { order_id } = outcome {
        if let Some(body) = Queued::get().body(order_id) {
            return json_response(StatusCode::ACCEPTED, body);
        }
    }
    let (mut resp, retry_after_secs) = match storm_answer(outcome) {
        Some(r) => (
            json_response(r.status, Bytes::from_static(r.body)),
            r.retry_after_secs,
        ),
        None => {
            let Answer {
                status,
                body,
                retry_after_secs,
            } = outcome.answer();
            (
                (status_code(status), Json(body)).into_response(),
                retry_after_secs,
            )
        }
    };
    if let Some(secs) = retry_after_secs {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Outcome(o) => respond(&o),
            ApiError::Dependency(which, err) => {
                let mut resp = respond(&Outcome::Busy {
                    retry_after_secs: 1,
                });
                resp.extensions_mut().insert(DependencyFailed {
                    which,
                    cause: format!("{err:#}"),
                });
                resp
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answers rendered once (whole, or around a 202's order id) are the outcomes'
    /// own: status, headers and body.
    #[tokio::test]
    async fn storm_answers_are_the_outcomes_own() {
        for outcome in [
            Outcome::SoldOut,
            Outcome::RateLimited {
                retry_after_secs: 1,
            },
            Outcome::Busy {
                retry_after_secs: 1,
            },
            Outcome::RateLimited {
                retry_after_secs: 3,
            },
            Outcome::Ended,
            Outcome::Queued {
                order_id: "0193a1b2c3d4e5f60718293a4b5c6d7e".into(),
            },
            // One that would need escaping takes the general path.
            Outcome::Queued {
                order_id: "a\"b".into(),
            },
        ] {
            let answer = outcome.answer();
            let resp = respond(&outcome);
            assert_eq!(resp.status().as_u16(), answer.status, "{outcome:?}");
            let header = |name| {
                resp.headers()
                    .get(name)
                    .map(|v| v.to_str().expect("ascii").to_owned())
            };
            assert_eq!(
                header(header::CONTENT_TYPE).as_deref(),
                Some("application/json")
            );
            assert_eq!(
                header(header::RETRY_AFTER),
                answer.retry_after_secs.map(|s| s.to_string())
            );
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .expect("body");
            // Byte for byte what the outcome's own body serialises to.
            assert_eq!(
                body,
                serde_json::to_vec(&answer.body).expect("JSON"),
                "{outcome:?}"
            );
        }
    }
}
