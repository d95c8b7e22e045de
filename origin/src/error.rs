//! The one error type of the HTTP surface: a contract outcome, or a failed dependency
//! that is logged once and answered as 503 busy (never the internal error's text).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use flashgate_core::wire::{Answer, Outcome};

/// An answer that is not a success.
#[derive(Debug)]
pub enum ApiError {
    /// A contract outcome (4xx, or a deliberate 503).
    Outcome(Outcome),
    /// Redis or Kafka failed or timed out: logged, answered 503 busy.
    Dependency(&'static str, anyhow::Error),
}

impl From<Outcome> for ApiError {
    fn from(o: Outcome) -> Self {
        ApiError::Outcome(o)
    }
}

/// Renders an outcome as an HTTP response.
pub fn respond(outcome: &Outcome) -> Response {
    let Answer {
        status,
        body,
        retry_after_secs,
    } = outcome.answer();
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(body),
    )
        .into_response();
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
                tracing::warn!(dependency = which, error = %format!("{err:#}"), "dependency failed");
                metrics::counter!("flashgate_dependency_errors_total", "dependency" => which)
                    .increment(1);
                respond(&Outcome::Busy {
                    retry_after_secs: 1,
                })
            }
        }
    }
}
