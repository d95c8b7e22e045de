//! Extractors: the edge's signed request ([`EdgeRequest`]) and the admin token ([`Admin`]).

use super::error::ApiError;
use super::AppState;
use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{header, request::Parts, HeaderMap, HeaderName};
use flashgate_core::ids::UserId;
use flashgate_core::keyring::KeyUsed;
use flashgate_core::sign::{self, SignError, Signed};
use flashgate_core::wire::{bad, Outcome, MAX_BODY_BYTES};
use flashgate_core::Millis;
use std::sync::Arc;
use std::time::Duration;

/// A request that carries a valid edge signature.
#[derive(Debug)]
pub(crate) struct EdgeRequest {
    /// The user the edge authenticated, if any.
    pub user: Option<UserId>,
    /// The body, at most [`MAX_BODY_BYTES`].
    pub body: Bytes,
    /// The room position the edge admitted the request at (signed with it), if any.
    pub room_position: Option<u64>,
    /// The network of the shopper's client (signed with the request), if the edge knew it.
    pub client_net: Option<String>,
    /// The time the edge signed the request at, unix ms.
    pub signed_at: Millis,
    /// The request's headers, kept as they came (nothing copied out of them).
    headers: HeaderMap,
}

impl EdgeRequest {
    pub(super) fn user(&self) -> Result<&UserId, ApiError> {
        self.user.as_ref().ok_or(Outcome::Unauthenticated.into())
    }

    /// The `Content-Type` header.
    pub(crate) fn content_type(&self) -> Option<&str> {
        header_str(&self.headers, &header::CONTENT_TYPE)
    }

    /// The edge signature, checked (the replay guard remembers it).
    pub(crate) fn signature(&self) -> &str {
        header_str(&self.headers, &SIGNATURE).unwrap_or_default()
    }
}

// The edge's headers as names parsed once, not on every lookup.
static SIGNATURE: HeaderName = HeaderName::from_static(sign::HEADER_SIGNATURE);

static TIMESTAMP: HeaderName = HeaderName::from_static(sign::HEADER_TIMESTAMP);

static NONCE: HeaderName = HeaderName::from_static(sign::HEADER_NONCE);

static USER: HeaderName = HeaderName::from_static(sign::HEADER_USER);

static ROOM_POSITION: HeaderName = HeaderName::from_static(sign::HEADER_ROOM_POSITION);

static CLIENT_NET: HeaderName = HeaderName::from_static(sign::HEADER_CLIENT_NET);

pub(super) fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn unauthenticated(kind: SignError) -> ApiError {
    metrics::counter!("flashgate_signature_rejections_total", "reason" => kind.code()).increment(1);
    Outcome::Unauthenticated.into()
}

/// The body, at most [`MAX_BODY_BYTES`] (a larger declared length is refused unread),
/// within `deadline` of its headers (408 for a client that sends it too slowly).
pub(super) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    deadline: Duration,
) -> Result<Bytes, ApiError> {
    let declared =
        header_str(headers, &header::CONTENT_LENGTH).and_then(|n| n.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(Outcome::PayloadTooLarge.into());
    }
    match tokio::time::timeout(deadline, to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(_)) => Err(Outcome::PayloadTooLarge.into()),
        Err(_) => Err(Outcome::RequestTimeout.into()),
    }
}

impl FromRequest<Arc<AppState>> for EdgeRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let h = &parts.headers;
        // Unsigned requests are refused before their body is read.
        let (Some(signature), Some(timestamp), Some(nonce)) = (
            header_str(h, &SIGNATURE),
            header_str(h, &TIMESTAMP).and_then(|t| t.parse().ok()),
            header_str(h, &NONCE),
        ) else {
            return Err(unauthenticated(SignError::Missing));
        };
        // What the headers alone decide, before a body that may never come is waited for.
        sign::check_headers(timestamp, nonce, state.clock.now_ms()).map_err(unauthenticated)?;
        let deadline = Duration::from_millis(state.settings.protect.body_timeout_ms);
        let body = read_body(h, body, deadline).await?;
        let user = header_str(h, &USER).unwrap_or("");
        // The edge writes a position in plain decimal: anything else is not its request.
        let room_position = match h.get(&ROOM_POSITION) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| unauthenticated(SignError::Forged))?,
            ),
        };
        let client_net = match h.get(&CLIENT_NET) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .filter(|n| sign::valid_client_net(n))
                    .ok_or_else(|| unauthenticated(SignError::Forged))?,
            ),
        };
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let key = Signed {
            environment: &state.settings.environment,
            method: parts.method.as_str(),
            path,
            user,
            timestamp,
            nonce,
            body: &body,
            room_position,
            client_net,
        }
        .verify(&state.edge_keys, signature, state.clock.now_ms())
        .map_err(unauthenticated)?;
        if key == KeyUsed::Previous {
            // While this counts, an edge still signs with the secret being rotated out.
            metrics::counter!("flashgate_signature_previous_key_total").increment(1);
        }
        let user = if user.is_empty() {
            None
        } else {
            Some(UserId::parse(user).map_err(|_| bad("invalid_user_id", "用户标识无效"))?)
        };
        let client_net = client_net.map(str::to_owned);
        Ok(EdgeRequest {
            user,
            body,
            room_position,
            client_net,
            signed_at: timestamp,
            headers: parts.headers,
        })
    }
}

/// Requests that carry `Authorization: Bearer <ADMIN_TOKEN>`.
pub(crate) struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let token = header_str(&parts.headers, &header::AUTHORIZATION)
            .and_then(flashgate_core::jwt::bearer)
            .unwrap_or("");
        // Compare MACs rather than the strings, so the comparison takes constant time.
        let tag = flashgate_core::crypto::sign_b64(b"admin", &state.admin_token);
        if flashgate_core::crypto::verify_b64(b"admin", token.as_bytes(), &tag) {
            Ok(Admin)
        } else {
            Err(Outcome::Unauthenticated.into())
        }
    }
}

/// The path's `{event_id}`, as decoded. A segment that does not decode (not UTF-8) is
/// kept as no id (`""`), which no handler takes for a slug: it is answered after the
/// signature or token check, as any other id that is not one, and never with axum's
/// plain-text 400.
pub(crate) struct EventIdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for EventIdPath {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let id = Path::<String>::from_request_parts(parts, state).await;
        Ok(Self(id.map(|Path(id)| id).unwrap_or_default()))
    }
}
