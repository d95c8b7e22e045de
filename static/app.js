// The activity page: one event, a countdown on the server's clock, one guarded buy button
// and a clear state for every answer of the purchase API. No framework, no build step.
// States and parameters are described in docs/page.md.
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const main = $('page');
  const params = new URLSearchParams(location.search);
  const fromPath = /^\/e\/([a-z0-9-]{1,64})\/?$/.exec(location.pathname);
  const eventId = params.get('event') || (fromPath && fromPath[1]) || 'demo';
  const api = `/api/events/${encodeURIComponent(eventId)}`;
  const TOKEN_KEY = 'flashgate.token';
  const MAX_BUSY_RETRIES = 6; // then the button comes back: the shopper decides, not a loop
  const ORDER_FOLLOW_MS = 120000;

  const TEXT = window.FlashgateText; // static/text.js
  const store = (s, k, v) => { try { if (v === undefined) return s.getItem(k); if (v === null) s.removeItem(k); else s.setItem(k, v); } catch { /* storage off */ } return null; };
  let lang = params.get('lang') || store(localStorage, 'flashgate.lang') || 'zh';
  if (!Object.hasOwn(TEXT, lang)) lang = 'zh';
  const t = (key, vars = {}) => (TEXT[lang][key] || key).replace(/\{(\w+)\}/g, (_, k) => vars[k] ?? '');

  // ---- server clock -------------------------------------------------------------------
  // server time = a sample's server_time + half its round trip + monotonic time since. The
  // tightest recent sample wins, so one slow answer does not move the countdown.
  const clock = { base: null, mono: 0, rtt: Infinity };
  function sampleClock(serverTime, sent, received) {
    const server = Date.parse(serverTime);
    if (Number.isNaN(server)) return;
    const rtt = received - sent;
    if (clock.base === null || rtt <= clock.rtt * 1.5 || received - clock.mono > 60000) {
      clock.base = server + rtt / 2; clock.mono = received; clock.rtt = rtt;
    }
  }
  const now = () => (clock.base === null ? Date.now() : clock.base + (performance.now() - clock.mono));

  // ---- state ----------------------------------------------------------------------------
  let info = null; // last GET /api/events/{id}
  let notFound = false;
  let outcome = { name: 'none' }; // the shopper's own story: see docs/page.md
  let working = false; // one purchase at a time: the double-submit guard
  let gen = 0; // bumped on sign-in/out so stale loops stop
  let ticket = null; // {value, expires, user}
  let room, human; // the room (static/room.js) and Turnstile (static/human.js), built below
  const timers = {};

  const token = () => store(sessionStorage, TOKEN_KEY) || '';
  function claims(tok) {
    try {
      const part = tok.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
    } catch { return null; }
  }
  const user = () => { const c = claims(token()); return c && c.sub ? String(c.sub) : ''; };

  function phase() {
    if (notFound) return 'not_found';
    if (!info) return 'loading';
    const n = now();
    if (n < Date.parse(info.starts_at)) return 'upcoming';
    if (n >= Date.parse(info.ends_at)) return 'ended';
    if (info.state === 'sold_out' || Number(info.stock_left) <= 0 || room.soldOut) return 'sold_out';
    return info.paused ? 'paused' : 'live';
  }

  // ---- rendering ------------------------------------------------------------------------
  const pad = (n) => String(n).padStart(2, '0');
  function duration(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    const d = Math.floor(s / 86400);
    return (d ? t('days', { d }) : '') + `${pad(Math.floor(s / 3600) % 24)}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
  }
  // A server time as the visitor's wall clock shows it (HH:MM:SS).
  function clockTime(serverMs) {
    const d = new Date(Date.now() + (serverMs - now()));
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function money(v) {
    if (v === '' || v == null || Number.isNaN(Number(v))) return '';
    const currency = params.get('currency') || main.dataset.currency || 'CNY';
    try { return new Intl.NumberFormat(lang === 'en' ? 'en' : 'zh-CN', { style: 'currency', currency }).format(Number(v)); } catch { return String(v); }
  }
  const setText = (el, text) => { if (el.textContent !== text) el.textContent = text; };

  // What the button and the status line say, from the phase and the shopper's outcome.
  function view(p) {
    const o = outcome;
    const id = o.orderId || '';
    switch (o.name) {
      case 'working': return { button: 'btnWorking', msg: '', tone: '' };
      case 'busy': return { button: 'btnWait', msg: 'msgBusyWait', tone: 'warn', vars: { s: Math.max(1, Math.ceil((o.until - performance.now()) / 1000)) } };
      case 'queued': return { button: 'btnQueued', msg: 'msgQueued', tone: 'ok', vars: { id } };
      case 'slow': return { button: 'btnQueued', msg: 'msgSlow', tone: 'ok' };
      case 'confirmed': return { button: 'btnBought', msg: 'msgConfirmed', tone: 'ok', vars: { id } };
      case 'already': return { button: 'btnBought', msg: 'msgAlready', tone: 'ok', vars: { id } };
      default: break;
    }
    const soldOut = o.name === 'sold_out' || p === 'sold_out';
    const message = {
      busy_gave_up: ['msgBusy', 'warn'], failed: ['msgFailed', 'error'], sold_out: ['msgSoldOut', 'error'],
      not_started: ['msgNotStarted', 'warn'], ended: ['msgEnded', 'error'], blocked: ['msgBlocked', 'error'],
      turn_passed: ['msgTurnPassed', 'error'], turn_used: ['msgTurnUsed', 'warn'],
      signed_out: ['msgSignedOut', 'error'], signin: ['msgSignin', 'warn'], error: ['msgError', 'error'],
      offline: ['msgOffline', 'warn'], signed_in: ['msgSignedIn', ''], bad_token: ['msgBadToken', 'error'],
      expired_token: ['msgExpiredToken', 'error'], paused: ['msgPaused', 'warn'], resumed: ['msgResumed', 'ok'],
      human: ['msgHuman', 'warn'],
    }[o.name] || ['', ''];
    const line = room.state();
    const idle = ['none', 'signed_in', 'resumed'].includes(o.name);
    if (p === 'paused') return { button: 'btnPaused', msg: 'msgPaused', tone: 'warn' };
    if (p === 'sold_out' && idle && room.receipt) return { button: 'btnSoldOut', msg: 'msgSoldOut', tone: 'error' }; // sold out while in line
    if (idle && line === 'passed') return { button: 'btnPassed', msg: 'msgTurnPassed', tone: 'error' }; // the admission expired
    if (idle && ['upcoming', 'live'].includes(p) && ['registered', 'waiting', 'turn'].includes(line)) {
      const msg = line === 'registered' ? 'msgRegistered' : line === 'turn' && p === 'live' ? 'msgTurn' : 'msgInLine';
      const button = p === 'upcoming' ? 'btnSoon' : { registered: 'btnDraw', waiting: 'btnInLine', turn: 'btnTurn' }[line];
      return { button, msg, tone: line === 'turn' && p === 'live' ? 'ok' : '', vars: { pos: room.position, at: clockTime(room.drawAt) } };
    }
    let button;
    if (p === 'not_found') button = 'btnNone';
    else if (p === 'loading') button = 'btnLoading';
    else if (p === 'upcoming') button = 'btnSoon';
    else if (p === 'ended' || o.name === 'ended') button = 'btnEnded';
    else if (o.name === 'turn_passed') button = 'btnPassed';
    else if (o.name === 'turn_used') button = 'btnUsed';
    else if (soldOut) button = 'btnSoldOut';
    else if (!token()) button = 'btnSignin';
    else if (['failed', 'busy_gave_up', 'error', 'blocked', 'offline'].includes(o.name)) button = 'btnAgain';
    else button = 'btnBuy';
    return { button, msg: message[0], tone: message[1], vars: { reason: o.reason || '', code: o.code || '', user: user() } };
  }

  function render() {
    const p = phase();
    const v = view(p);
    const enabled = ['btnBuy', 'btnSignin', 'btnAgain', 'btnTurn'].includes(v.button) && !working;
    const button = $('buy');
    if (button.disabled === enabled) button.disabled = !enabled;
    button.setAttribute('aria-busy', String(working));
    setText(button, t(v.button, v.vars));
    const status = $('status');
    setText(status, v.msg ? t(v.msg, v.vars) : '');
    status.dataset.tone = v.tone;
    main.dataset.phase = p;
    main.dataset.outcome = outcome.name;

    if (p === 'not_found') setText($('name'), t('msgNotFound'));
    if (info) {
      const n = now();
      const starts = Date.parse(info.starts_at);
      const ends = Date.parse(info.ends_at);
      let line = '';
      if (p === 'upcoming') line = t('startsIn', { t: duration(starts - n) });
      else if (p === 'ended') line = t('ended');
      else if (p === 'sold_out') line = t('soldOutLine');
      else if (p === 'paused') line = t('pausedLine');
      else if (p === 'live') line = ends - n < 86400000 ? t('endsIn', { t: duration(ends - n) }) : t('live');
      setText($('countdown'), line);
      const left = p === 'sold_out' || outcome.name === 'sold_out' ? 0 : Math.max(0, Number(info.stock_left));
      setText($('stock'), String(left));
      setText($('total'), String(info.stock_total));
      $('meter').style.width = `${info.stock_total > 0 ? Math.round((100 * left) / info.stock_total) : 0}%`;
    }
    room.render(t, duration, clockTime);
  }

  function renderLanguage() {
    document.documentElement.lang = lang === 'en' ? 'en' : 'zh-CN';
    document.querySelectorAll('[data-i18n]').forEach((el) => setText(el, t(el.dataset.i18n)));
    $('picture').setAttribute('aria-label', t('picture'));
    const other = lang === 'en' ? 'zh' : 'en';
    setText($('lang'), t('lang'));
    $('lang').lang = other === 'en' ? 'en' : 'zh-CN';
    setText($('price'), money(params.get('price') ?? main.dataset.price));
    setText($('was'), money(params.get('was') ?? main.dataset.was));
    if (info) { setText($('name'), info.name); document.title = t('title', { name: info.name }); } else if (!notFound) setText($('name'), t('loading'));
    setText($('who'), user() ? t('signedInAs', { user: user() }) : t('signedOutNow'));
    $('signout').hidden = !user();
    render();
  }

  // ---- network --------------------------------------------------------------------------
  const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });
  const jitter = (ms, spread = 0.4) => ms * (1 - spread / 2 + Math.random() * spread);

  async function call(method, path, { ticketValue, receipt, body: payload = {}, auth = true } = {}) {
    const headers = {};
    if (auth && token()) headers.authorization = `Bearer ${token()}`;
    if (ticketValue) headers['x-ticket'] = ticketValue;
    if (receipt) headers['x-room-receipt'] = receipt;
    if (method === 'POST') headers['content-type'] = 'application/json';
    const sent = performance.now();
    let r;
    try {
      r = await fetch(path, { method, headers, body: method === 'POST' ? JSON.stringify(payload) : undefined, cache: 'no-store' });
    } catch {
      return { status: 0, body: {}, retryAfter: 2, sent, received: performance.now() };
    }
    const received = performance.now();
    let body = {};
    try { body = await r.json(); } catch { /* not JSON */ }
    const ra = Number(r.headers.get('retry-after'));
    return { status: r.status, body: body || {}, retryAfter: ra > 0 ? Math.min(ra, 60) : 1, sent, received };
  }

  // Event info, refreshed gently: every ~5 s while live, ~15 s otherwise, right after the
  // start, never while the tab is hidden, with backoff when the edge is unhappy.
  let refreshing = false;
  let failures = 0;
  async function refresh() {
    clearTimeout(timers.refresh);
    if (document.hidden) return; // visibilitychange brings us back
    if (refreshing) return;
    refreshing = true;
    let next;
    try {
      const r = await call('GET', api, { auth: false });
      if (r.status === 200) {
        failures = 0;
        sampleClock(r.body.server_time, r.sent, r.received);
        const first = !info;
        const resumed = info && info.paused && !r.body.paused;
        info = r.body;
        if (resumed && ['paused', 'none', 'signed_in'].includes(outcome.name)) outcome = { name: 'resumed' };
        notFound = false;
        if (first) { renderLanguage(); checkOrder(); }
        scheduleStart();
        schedulePrefetch();
        const p = phase();
        if (p === 'ended') next = null;
        else if (p === 'upcoming') next = Math.min(jitter(15000), Math.max(0, Date.parse(info.starts_at) - now()) + 300 + Math.random() * 1500);
        else if (p === 'live' || p === 'paused') next = jitter(5000);
        else next = jitter(15000);
      } else if (r.status === 404) {
        notFound = true; next = null; renderLanguage();
      } else {
        failures += 1;
        next = Math.max(r.retryAfter * 1000, Math.min(60000, 2000 * 2 ** failures));
        next = jitter(next);
      }
    } finally {
      refreshing = false;
    }
    render();
    if (next != null) timers.refresh = setTimeout(refresh, next);
  }

  // A timer at the exact start, so the button wakes on time even between ticks.
  function scheduleStart() {
    clearTimeout(timers.start);
    const wait = Date.parse(info.starts_at) - now();
    if (wait > 0 && wait < 2 ** 31 - 1) timers.start = setTimeout(render, wait + 1);
  }

  // Signed in before the start: fetch the ticket quietly at a random moment of the last
  // minute, so the crowd's ticket requests do not all land on the start.
  function schedulePrefetch() {
    if (timers.prefetch || !info || !token()) return;
    const wait = Date.parse(info.starts_at) - now();
    if (wait <= 3000) return;
    const at = Math.max(0, wait - 60000) + Math.random() * (Math.min(wait, 60000) - 3000);
    timers.prefetch = setTimeout(() => {
      // With Turnstile, only a token the widget already gave: the prefetch never waits.
      if (token() && phase() === 'upcoming' && (!human.needed() || human.token)) getTicket(0).catch(() => {});
    }, at);
  }

  // A ticket may be asked for before the start (it opens at the start); it is reused
  // until shortly before it expires.
  async function getTicket(humanWaitMs = 10000) {
    const u = user();
    if (ticket && ticket.user === u && ticket.eventId === eventId && now() < ticket.expires - 5000) return { status: 200 };
    const proof = human.needed() ? await human.take(humanWaitMs) : null;
    if (human.needed() && !proof) return { status: -1, body: {} }; // the widget is not done yet
    const r = await call('POST', `${api}/ticket`, { body: proof ? { turnstile_token: proof } : {} });
    if (r.status === 200 && r.body.ticket) {
      ticket = { value: r.body.ticket, expires: Date.parse(r.body.expires_at) || now() + 60000, user: u, eventId };
    }
    return r;
  }

  async function attempt() {
    for (let fresh = 0; ; fresh += 1) {
      const tk = await getTicket();
      if (tk.status !== 200) return tk;
      if (room.on && !room.receipt) await room.join();
      if (room.soldOut) return { status: 409, body: {} };
      const r = await call('POST', `${api}/purchase`, { ticketValue: ticket.value, receipt: room.on ? room.receipt : '' });
      const reason = String(r.body.reason || '');
      // A stale or early ticket, or a receipt the edge no longer takes: ask for a new one
      // once; anything else (a spent receipt too: it is the user's) is a verdict.
      if (r.status === 403 && reason.startsWith('ticket_') && fresh === 0) { ticket = null; continue; }
      const renew = reason.startsWith('receipt_') && reason !== 'receipt_used';
      if (r.status === 403 && renew && fresh === 0) { room.forget(); await room.join(); continue; }
      return r;
    }
  }

  // The stock moved because of us: look again in a moment instead of at the next round.
  const refreshSoon = () => { clearTimeout(timers.refresh); timers.refresh = setTimeout(refresh, 1000 + Math.random() * 1000); };

  function setOutcome(name, extra = {}) { outcome = { name, ...extra }; render(); }

  async function buy() {
    if (working) return;
    if (!token()) { setOutcome('signin'); $('signin').open = true; $('token').focus(); return; }
    if (phase() !== 'live' || ['waiting', 'registered', 'passed'].includes(room.state())) return;
    working = true;
    const mine = gen;
    let gaveUp = false;
    setOutcome('working');
    try {
      for (let tries = 0; mine === gen; tries += 1) {
        const r = await attempt();
        if (mine !== gen) return;
        if (r.status === -1) { setOutcome('human'); return; }
        if (r.status === 503 && (r.body.status === 'paused' || r.body.error === 'paused')) {
          // The kill switch: no retries; the event info says when the sale resumes.
          if (info) info = { ...info, paused: true };
          setOutcome('paused'); refreshSoon(); return;
        }
        if (r.status === 429 || r.status === 503 || r.status === 0) {
          if (tries >= MAX_BUSY_RETRIES) { setOutcome(r.status === 0 ? 'offline' : 'busy_gave_up'); gaveUp = true; return; }
          // Retry-After, growing with each try, plus jitter: never a tight loop, and a crowd
          // that was told "1 s" does not come back in the same millisecond.
          // In the room, a 429 says when this shopper's turn comes: wait for just that.
          const turn = room.on && r.status === 429 && room.receipt;
          const base = Math.min(30000, Math.max(r.retryAfter * 1000, turn ? 0 : 1000 * 2 ** tries));
          const wait = base + Math.random() * Math.min(base, 2000);
          const until = performance.now() + wait;
          setOutcome('busy', { until });
          await sleep(wait);
          if (mine !== gen || phase() !== 'live') { if (mine === gen) setOutcome('none'); return; }
          setOutcome('working');
          continue;
        }
        if (r.status === 425) {
          // Our clock said "started" a hair early: wait for the start if it is near.
          const starts = Date.parse(r.body.starts_at || (info && info.starts_at));
          const wait = starts - now();
          if (wait > -1000 && wait < 5000 && tries < MAX_BUSY_RETRIES) { await sleep(Math.max(wait, 0) + 200 + Math.random() * 800); continue; }
          setOutcome('not_started'); refresh(); return;
        }
        answer(r, mine);
        return;
      }
    } finally {
      working = false;
      render();
      // An answer that never came, or a 503 from a layer that stopped waiting, may stand
      // for an order made after all: look once before leaving the shopper at "try again".
      if (gaveUp) checkOrder(['busy_gave_up', 'offline']);
      else if (outcome.name === 'turn_used') checkOrder(['turn_used']);
    }
  }

  function answer(r, mine) {
    const id = r.body.order_id;
    switch (r.status) {
      case 202: setOutcome('queued', { orderId: id }); follow(mine, id); refreshSoon(); break;
      case 200: setOutcome('already', { orderId: id }); break;
      case 409: setOutcome('sold_out'); room.markSoldOut(); if (info) info = { ...info, stock_left: 0, state: 'sold_out' }; refreshSoon(); break;
      case 410: setOutcome('ended'); break;
      case 401: signOut('signed_out'); break;
      case 403:
        // An admission that expired: the place went to the next in line (docs/room.md).
        if (r.body.reason === 'receipt_expired') setOutcome('turn_passed');
        // The receipt bought already (an answer lost, or another tab): its order tells.
        else if (r.body.reason === 'receipt_used') setOutcome('turn_used');
        else setOutcome('blocked', { reason: r.body.reason || r.body.error || '403' });
        break;
      default: setOutcome('error', { code: r.body.error || r.body.status || r.status });
    }
  }

  // After 202, poll the order with backoff until it is confirmed or failed.
  async function follow(mine, orderId) {
    let delay = 800;
    const deadline = performance.now() + ORDER_FOLLOW_MS;
    while (mine === gen && performance.now() < deadline) {
      await sleep(jitter(delay));
      if (mine !== gen) return;
      const r = await call('GET', `${api}/order`);
      if (mine !== gen) return;
      const id = r.body.order_id || orderId;
      if (r.status === 200 && r.body.status === 'confirmed') { setOutcome('confirmed', { orderId: id }); return; }
      if (r.status === 200 && r.body.status === 'failed') { setOutcome('failed', { orderId: id }); return; }
      if (r.status === 401) { signOut('signed_out'); return; }
      delay = Math.min(8000, Math.max(delay * 1.6, r.status === 429 || r.status === 503 ? r.retryAfter * 1000 : 0));
    }
    if (mine === gen) setOutcome('slow', { orderId });
  }

  // On load or sign-in (or after giving up on a busy purchase): does this shopper already
  // hold an order here? Only replaces an outcome that says nothing about one.
  async function checkOrder(replaces = ['none', 'signed_in']) {
    const idle = () => replaces.includes(outcome.name) && !working;
    if (!token() || !info || phase() === 'upcoming' || !idle()) return;
    const mine = gen;
    const r = await call('GET', `${api}/order`);
    if (mine !== gen || !idle()) return;
    const id = r.body.order_id;
    if (r.status === 200 && r.body.status === 'confirmed') setOutcome('confirmed', { orderId: id });
    else if (r.status === 200 && r.body.status === 'failed') setOutcome('failed', { orderId: id });
    else if (r.status === 200 && r.body.status === 'queued') { setOutcome('queued', { orderId: id }); follow(mine, id); }
    else if (r.status === 401) signOut('signed_out');
  }

  // ---- sign-in (demo) -----------------------------------------------------------------
  function signOut(why) {
    gen += 1; ticket = null; clearTimeout(timers.prefetch); timers.prefetch = null;
    store(sessionStorage, TOKEN_KEY, null);
    outcome = { name: why || 'none' };
    if (why) $('signin').open = true;
    room.reset();
    renderLanguage();
  }
  function signIn() {
    const raw = $('token').value.trim();
    const tok = raw.includes(',') ? raw.split(',').pop().trim() : raw; // a users.csv line works too
    const c = claims(tok);
    if (!c || !c.sub) { setOutcome('bad_token'); return; }
    if (c.exp && c.exp * 1000 < Date.now()) { setOutcome('expired_token'); return; }
    gen += 1; ticket = null; clearTimeout(timers.prefetch); timers.prefetch = null;
    store(sessionStorage, TOKEN_KEY, tok);
    $('token').value = '';
    $('signin').open = false;
    outcome = { name: 'signed_in' };
    room.reset();
    renderLanguage();
    schedulePrefetch();
    checkOrder();
  }

  // The room (off when the edge has none) and Turnstile (when the edge names a site key).
  const done = ['queued', 'slow', 'confirmed', 'already', 'sold_out', 'ended'];
  room = window.FlashgateRoom.create({
    api, eventId, call, now, user, jitter,
    wanted: () => !done.includes(outcome.name) && !['ended', 'sold_out'].includes(phase()),
    onChange: () => render(),
    onSignedOut: () => signOut('signed_out'),
  });
  human = window.FlashgateHuman.create({ call, lang: () => lang, onChange: () => render() });

  $('buy').addEventListener('click', buy);
  $('save').addEventListener('click', signIn);
  $('signout').addEventListener('click', () => signOut());
  $('lang').addEventListener('click', () => {
    lang = lang === 'en' ? 'zh' : 'en';
    store(localStorage, 'flashgate.lang', lang);
    renderLanguage();
  });
  document.addEventListener('visibilitychange', () => { if (!document.hidden) { refresh(); room.refresh(); } });
  // A ready sign-in (`./dev up` prints one): `#token=<JWT>` signs in at once. The fragment
  // never reaches a server, and is cleared from the address bar so it is not shared.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get('token')) {
    $('token').value = fragment.get('token');
    history.replaceState(null, '', location.pathname + location.search);
    signIn();
  }
  renderLanguage();
  refresh();
  room.refresh();
  human.start();
  setInterval(render, 250);
})();
