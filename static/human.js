// Turnstile on the page: when the edge names a site key (`GET /api/page`), render the
// widget and send its token with the ticket request. A token is good for one check, so
// the widget is reset after each use. docs/page.md, "Turnstile".
(() => {
  'use strict';
  const SCRIPT = 'https://challenges.cloudflare.com/turnstile/v0/api.js?render=explicit';

  // deps: {call, lang, onChange}
  function create(deps) {
    const human = { siteKey: null, token: null, widget: null, failed: false };

    human.start = async () => {
      const r = await deps.call('GET', '/api/page', { auth: false });
      if (r.status !== 200 || !r.body.turnstile_site_key) return; // no widget asked for
      human.siteKey = String(r.body.turnstile_site_key);
      const s = document.createElement('script');
      s.src = SCRIPT;
      s.async = true;
      s.onload = render;
      s.onerror = () => { human.failed = true; deps.onChange(); };
      document.head.appendChild(s);
      deps.onChange();
    };

    function render() {
      const box = document.getElementById('human');
      if (!window.turnstile) { human.failed = true; deps.onChange(); return; }
      box.hidden = false;
      const done = (token) => { human.token = token || null; deps.onChange(); };
      human.widget = window.turnstile.render(box, {
        sitekey: human.siteKey,
        language: deps.lang() === 'en' ? 'en' : 'zh-cn',
        callback: done,
        'expired-callback': () => done(null),
        'error-callback': () => done(null),
      });
    }

    /** Whether a ticket request must carry a token. */
    human.needed = () => human.siteKey !== null;

    /** The token, waiting up to `ms` for the widget; it is used once, then the widget resets. */
    human.take = async (ms) => {
      const deadline = performance.now() + ms;
      while (!human.token && !human.failed && performance.now() < deadline) {
        await new Promise((r) => { setTimeout(r, 100); });
      }
      const token = human.token;
      human.token = null;
      if (token && human.widget != null) window.turnstile.reset(human.widget);
      return token;
    };

    return human;
  }

  window.FlashgateHuman = { create };
})();
