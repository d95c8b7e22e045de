//! `POST /api/events/{id}/room`: a shopper joins an event's room, screened as a ticket
//! request is, and gets a signed receipt of their registration or position.

use super::public;
use crate::{json, now, origin, respond, Cx};
use flashgate_core::admission::{self, RoomFacts};
use flashgate_core::isolate::CachedEvent;
use flashgate_core::room::receipt::{self, Receipt};
use flashgate_core::ticket;
use flashgate_core::wire::{self, Outcome};
use worker::{Request, Response, Result};

impl Cx<'_> {
    /// `POST /api/events/{id}/room`: joins the event's room (once per user) and answers
    /// the position, its signed receipt for this client, and the public schedule.
    pub(crate) async fn room_join(&self, req: &mut Request, id: &str) -> Result<Response> {
        let site = req.url()?;
        let answer = async {
            let settings = self.cfg.room.ok_or(Outcome::NotFound)?;
            let (s, limiter, window) = self.screen_per_ip(req, id, "room").await?;
            let settings = crate::config::event_room(settings, window.as_ref());
            let t = now();
            let facts = RoomFacts {
                window: window.as_ref().map(CachedEvent::window),
                sold_out: origin::sold_out(&s.event, t),
                limiter,
            };
            admission::room_gate(&facts, &settings, t)?;
            let w = window.as_ref().ok_or(Outcome::EventNotFound)?;
            let fingerprint =
                ticket::fingerprint(self.head.user_agent.as_deref().unwrap_or_default());
            let ask = public::ask(settings, &s.event, w, t);
            let told = super::join(
                ask,
                &s.user,
                &fingerprint,
                self.env,
                &site,
                t,
                self.cfg.room_cache_ms,
            )
            .await?;
            // Before the seal the receipt holds the arrival in the draw, after it the
            // position (core::room::draw::holds_position tells them apart).
            let (Some(held), Some(issued_at)) = (told.position.or(told.arrival), told.issued_at)
            else {
                return Err(Outcome::Busy {
                    retry_after_secs: 1,
                });
            };
            let token = receipt::issue(
                self.cfg.receipt_keys().current(),
                &Receipt {
                    event: s.event.clone(),
                    user: s.user.clone(),
                    fingerprint,
                    position_or_arrival: held,
                    issued_at,
                },
            );
            let turn = told
                .position
                .map(|p| flashgate_core::room::schedule::estimated_turn(&told.schedule, p));
            Ok(serde_json::json!({
                "event_id": s.event.as_str(),
                "position": told.position,
                "receipt": token,
                "queued": told.queued,
                "schedule": told.schedule,
                "estimated_turn": turn,
                "draw": public::draw(&told.draw, false),
                "server_time": wire::fmt_time(now()),
            }))
        };
        match answer.await {
            Ok(body) => json(&body),
            Err(o) => respond(&o),
        }
    }
}
