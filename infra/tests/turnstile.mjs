// Stand-ins for Cloudflare Turnstile, which this machine cannot reach: a siteverify server
// on loopback (the edge is pointed at it with TURNSTILE_VERIFY_URL) and the widget's
// script (served to the browser by route interception). The stand-in widget hands out
// tokens that start with PASS; siteverify accepts those, with the right secret, once each.
import { createServer } from 'node:http';

export const SECRET = 'dev-only-secret';
export const SITE_KEY = '1x00000000000000000000AA'; // Cloudflare's documented always-pass test key
export const PASS = 'standin-pass-';
export const SCRIPT_URL = 'https://challenges.cloudflare.com/turnstile/v0/api.js';

/** Starts the siteverify stand-in; `calls` records every body it was sent. */
export async function siteverify() {
  const calls = [];
  const used = new Set();
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => { raw += c; });
    req.on('end', () => {
      let body = {};
      try { body = JSON.parse(raw); } catch { /* not JSON: refused below */ }
      calls.push(body);
      const token = String(body.response ?? '');
      const success = req.method === 'POST' && body.secret === SECRET && token.startsWith(PASS) && !used.has(token);
      if (success) used.add(token);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(success ? { success } : { success, 'error-codes': ['invalid-input-response'] }));
    });
  });
  await new Promise((r) => { server.listen(0, '127.0.0.1', r); });
  return {
    url: `http://127.0.0.1:${server.address().port}/siteverify`,
    calls,
    close: () => new Promise((r) => { server.close(r); }),
  };
}

/** The widget's stand-in: renders a box and hands a fresh PASS token to the callback. */
export const WIDGET_JS = `(() => {
  let n = 0;
  const widgets = {};
  const issue = (id) => setTimeout(() => widgets[id].callback('${PASS}' + Date.now() + '-' + (n += 1)), 150);
  window.turnstile = {
    render(el, opts) {
      const id = 'w' + Object.keys(widgets).length;
      widgets[id] = opts;
      el.innerHTML = '<div style="border:1px solid #c4c6ca;border-radius:4px;padding:14px 18px;background:#fafafa;font-size:14px">✔ 人机验证 (stand-in)</div>';
      el.dataset.sitekey = opts.sitekey;
      issue(id);
      return id;
    },
    reset(id) { issue(id); },
    remove() {},
    getResponse() { return undefined; },
  };
})();`;
