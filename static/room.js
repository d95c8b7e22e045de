// The edge room on the page (docs/room.md): join before the sale, keep the receipt,
// compute one's own turn from the public schedule and refresh it gently. app.js owns the
// button and the status line; this file owns the room's state, its calls and its panel.
// States and timings are described in docs/page.md, "The room".
(() => {
  'use strict';

  // When `position`'s turn comes at the earliest: core::room::schedule::estimated_turn.
  function estimatedTurn(s, position) {
    const time = (count) => Math.ceil((count * 1000) / Math.max(1, Number(s.admit_per_second) || 1));
    const ideal = s.opened_at + time(Math.max(0, position - 1));
    if (position <= s.admitted_through) return Math.min(ideal, s.as_of);
    return Math.max(ideal, Math.max(s.as_of, s.opened_at) + time(position - s.admitted_through));
  }

  const OPEN_PHASES = ['registering', 'sealing', 'open'];
  const DRAW_RETRIES = 10; // re-joins after the draw before waiting for the next refresh

  // deps: {api, eventId, call, now, user, jitter, wanted, onChange, onSignedOut}
  function create(deps) {
    const { api, eventId, call, now, user, onChange } = deps;
    const timers = {};
    let gen = 0; // bumped on sign-in/out so stale answers are dropped
    let refreshing = false;
    let failures = 0;
    let joinAfter = 0; // server time before which a join is not tried again (425, 429)
    const room = {
      on: null, // null: not asked yet; false: this edge has no room (404), the page as without one
      phase: '',
      soldOut: false,
      schedule: null,
      position: null,
      receipt: '',
      drawAt: null, // registered for the fair-start draw: the position comes at this time
      joining: null, // the join in flight (a promise)
    };

    const key = () => `flashgate.room.${eventId}.${user()}`;
    function save() {
      try {
        sessionStorage.setItem(key(), JSON.stringify({ position: room.position, receipt: room.receipt, draw_at: room.drawAt }));
      } catch { /* storage off: the join is asked again on reload (same position) */ }
    }
    function restore() {
      room.position = null; room.receipt = ''; room.drawAt = null;
      if (!user()) return;
      let saved = null;
      try { saved = JSON.parse(sessionStorage.getItem(key()) || 'null'); } catch { saved = null; }
      if (!saved || !saved.receipt) return;
      room.receipt = String(saved.receipt);
      room.position = Number(saved.position) > 0 ? Number(saved.position) : null;
      room.drawAt = room.position ? null : Number(saved.draw_at) || null;
      if (room.drawAt) scheduleDrawJoin(0);
    }

    function takeSchedule(s) {
      if (!s || typeof s.opened_at !== 'number') return;
      if (!room.schedule || s.as_of >= room.schedule.as_of) room.schedule = s;
    }

    /** Where this shopper stands: off, idle (not in line), registered, waiting, turn, passed (the admission expired) or sold_out. */
    room.state = () => {
      if (!room.on) return 'off';
      if (room.soldOut) return 'sold_out';
      if (room.position && room.receipt && room.position <= (room.schedule?.expired_through ?? 0)) return 'passed';
      if (room.position && room.receipt) return room.turnAt() <= now() || room.position <= (room.schedule?.admitted_through ?? 0) ? 'turn' : 'waiting';
      if (room.drawAt && room.receipt) return 'registered';
      return 'idle';
    };
    /** The server time of this shopper's turn (from the newest schedule). */
    room.turnAt = () => (room.schedule && room.position ? estimatedTurn(room.schedule, room.position) : Infinity);
    /** People still ahead in line, as far as the schedule and the clock tell. */
    room.ahead = () => {
      const s = room.schedule;
      if (!s || !room.position) return 0;
      const known = room.position - 1 - s.admitted_through;
      const byClock = Math.ceil(((room.turnAt() - Math.max(now(), s.opened_at)) * s.admit_per_second) / 1000);
      return Math.max(0, Math.min(known, byClock));
    };

    /** Joins the line (idempotent at the edge: the same position again). */
    room.join = () => {
      if (!room.joining) room.joining = join().finally(() => { room.joining = null; });
      return room.joining;
    };
    async function join() {
      const mine = gen;
      const r = await call('POST', `${api}/room`);
      if (mine !== gen) return r;
      if (r.status === 200 && r.body.receipt) {
        failures = 0;
        room.receipt = String(r.body.receipt);
        takeSchedule(r.body.schedule);
        const position = Number(r.body.position);
        if (position > 0) {
          room.position = position; room.drawAt = null; clearTimeout(timers.draw);
        } else if (r.body.draw && Number(r.body.draw.draw_at)) {
          room.drawAt = Number(r.body.draw.draw_at);
          scheduleDrawJoin(0);
        }
        save();
      } else if (r.status === 409) {
        room.soldOut = true;
      } else if (r.status === 410) {
        room.phase = 'ended';
      } else if (r.status === 401) {
        deps.onSignedOut();
      } else if (r.status === 425 || r.status === 429 || r.status === 503 || r.status === 0) {
        joinAfter = now() + deps.jitter(Math.max(r.retryAfter * 1000, 4500));
      }
      onChange();
      return r;
    }

    // The draw's result comes at draw_at: ask once, a random 0–3 s later so the crowd
    // does not arrive in one millisecond; again (bounded) if the seal is not there yet.
    function scheduleDrawJoin(round) {
      clearTimeout(timers.draw);
      if (round >= DRAW_RETRIES || !room.drawAt) return;
      const wait = round === 0 ? Math.max(0, room.drawAt - now()) + Math.random() * 3000 : 3000 + Math.random() * 3000;
      const mine = gen;
      timers.draw = setTimeout(async () => {
        if (mine !== gen) return;
        await room.join();
        if (mine === gen && !room.position && room.drawAt) scheduleDrawJoin(round + 1);
      }, Math.min(wait, 2 ** 31 - 1));
    }

    // The public schedule, every 3–6 s while this shopper may be in line (the edge caches
    // it), every ~15 s otherwise, never while the tab is hidden; stops once nothing is left to wait for.
    room.refresh = async () => {
      clearTimeout(timers.refresh);
      if (document.hidden || refreshing || room.on === false) return;
      refreshing = true;
      let next = null;
      try {
        const r = await call('GET', `${api}/room`, { auth: false });
        if (r.status === 404 && room.on === null) {
          room.on = false;
        } else if (r.status === 200) {
          if (room.on === null) { room.on = true; restore(); }
          failures = 0;
          room.phase = String(r.body.phase || '');
          if (r.body.sold_out === true) room.soldOut = true;
          takeSchedule(r.body.schedule);
          const inLine = OPEN_PHASES.includes(room.phase);
          if (inLine && user() && !room.position && !room.drawAt && now() >= joinAfter) await room.join();
          if (!room.soldOut && room.phase !== 'ended' && deps.wanted()) next = inLine && user() ? 3000 + Math.random() * 3000 : deps.jitter(15000);
        } else {
          failures += 1;
          next = deps.jitter(Math.max(r.retryAfter * 1000, Math.min(60000, 3000 * 2 ** failures)));
        }
      } finally {
        refreshing = false;
      }
      onChange();
      if (next != null) timers.refresh = setTimeout(room.refresh, next);
    };

    /** A new shopper in this tab (sign-in or out): their own line, from storage or a join. */
    room.reset = () => {
      gen += 1; joinAfter = 0; clearTimeout(timers.draw);
      if (room.on) { restore(); room.refresh(); }
      onChange();
    };
    /** The receipt the edge refused: forget it and join again. */
    room.forget = () => {
      room.position = null; room.receipt = ''; room.drawAt = null;
      try { sessionStorage.removeItem(key()); } catch { /* storage off */ }
    };
    room.markSoldOut = () => { room.soldOut = true; onChange(); };

    /** The room's panel: position, people ahead, estimated time and a countdown. */
    room.render = (t, duration, clockTime) => {
      const panel = document.getElementById('room');
      const state = room.state();
      const show = ['registered', 'waiting', 'turn'].includes(state) && deps.wanted();
      if (panel.hidden === show) panel.hidden = !show;
      if (!show) return;
      panel.dataset.state = state;
      const set = (id, text) => { const el = document.getElementById(id); if (el.textContent !== text) el.textContent = text; };
      if (state === 'registered') {
        set('room-position', t('roomRegistered', { at: clockTime(room.drawAt) }));
        set('room-eta', '');
      } else {
        set('room-position', t('roomPosition', { pos: room.position, ahead: room.ahead() }));
        set('room-eta', state === 'turn' ? t('roomTurn') : t('roomEta', { at: clockTime(room.turnAt()), t: duration(room.turnAt() - now()) }));
      }
    };

    return room;
  }

  window.FlashgateRoom = { create, estimatedTurn };
})();
