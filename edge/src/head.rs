//! What a shopper request's rules read of it: its headers and URL facts, and its body.

use flashgate_core::admission::Incoming;
use flashgate_core::bot::Client;
use flashgate_core::room::receipt;
use flashgate_core::ticket;
use flashgate_core::wire::{self, bad, Outcome};
use futures_util::StreamExt;
use std::net::IpAddr;
use worker::Request;

/// The headers and URL facts the rules read, read once.
pub(crate) struct Head {
    pub(crate) authorization: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) content_length: Option<usize>,
    pub(crate) ticket: Option<String>,
    pub(crate) receipt: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) accept: Option<String>,
    pub(crate) accept_language: Option<String>,
    pub(crate) sec_fetch_site: Option<String>,
    pub(crate) origin: Option<String>,
    pub(crate) host: Option<String>,
    /// `CF-Connecting-IP`: set by Cloudflare (and by `wrangler dev`, from the socket,
    /// when the client did not send one).
    pub(crate) ip: Option<IpAddr>,
    /// `CF-Ray`: Cloudflare's id of this request, passed to the origin so logs join.
    pub(crate) ray: Option<String>,
    pub(crate) has_query: bool,
}

impl Head {
    pub(crate) fn read(req: &Request) -> Self {
        let h = |name: &str| req.headers().get(name).ok().flatten();
        Self {
            authorization: h("authorization"),
            content_type: h("content-type"),
            content_length: h("content-length").and_then(|l| l.trim().parse().ok()),
            ticket: h(ticket::HEADER),
            receipt: h(receipt::HEADER),
            user_agent: h("user-agent"),
            ray: h("cf-ray"),
            accept: h("accept"),
            accept_language: h("accept-language"),
            sec_fetch_site: h("sec-fetch-site"),
            origin: h("origin"),
            host: h("host"),
            ip: h("cf-connecting-ip").and_then(|ip| ip.trim().parse().ok()),
            has_query: req.url().is_ok_and(|u| u.query().is_some()),
        }
    }

    pub(crate) fn client(&self) -> Client<'_> {
        Client {
            ip: self.ip,
            user_agent: self.user_agent.as_deref(),
            accept: self.accept.as_deref(),
            accept_language: self.accept_language.as_deref(),
            sec_fetch_site: self.sec_fetch_site.as_deref(),
            origin: self.origin.as_deref(),
            host: self.host.as_deref(),
            has_query: self.has_query,
        }
    }

    pub(crate) fn incoming<'a>(&'a self, event_id: &'a str, body: &'a [u8]) -> Incoming<'a> {
        Incoming {
            event_id,
            authorization: self.authorization.as_deref(),
            content_type: self.content_type.as_deref(),
            body,
            client: self.client(),
        }
    }
}

/// Reads a body of at most 4 KiB: 413 from `Content-Length`, or as soon as more arrives.
pub(crate) async fn read_body(
    req: &mut Request,
    head: &Head,
) -> std::result::Result<Vec<u8>, Outcome> {
    if head
        .content_length
        .is_some_and(|l| l > wire::MAX_BODY_BYTES)
    {
        return Err(Outcome::PayloadTooLarge);
    }
    let Ok(mut stream) = req.stream() else {
        return Ok(Vec::new()); // no body at all
    };
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend(chunk.map_err(|_| bad("invalid_body", "请求体无法读取"))?);
        if body.len() > wire::MAX_BODY_BYTES {
            return Err(Outcome::PayloadTooLarge);
        }
    }
    Ok(body)
}
