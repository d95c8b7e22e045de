// The browser of the page's end-to-end tests (page.test.mjs, page-room.test.mjs): Debian's
// Chromium driven by playwright-core, a fresh profile per test file, a tab per page, and
// screenshots of each state in target/page-screenshots/.
import { before, after } from 'node:test';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

import { env, root, users as mint, putEvent as put } from './stack.mjs';

const shots = join(root, 'target', 'page-screenshots');
export const users = (count, tag) => mint(count, `pg${tag}`);
export const putEvent = (id, stock, startsInMs, endsInMs) => put(id, stock, startsInMs, endsInMs, `秒杀手机 ${id}`);

let context;
let profile;
// Script errors thrown by any page of this test file.
export const pageErrors = [];

// Chromium for the test file that calls this: launched before its tests, closed after.
export function useBrowser() {
  before(async () => {
    mkdirSync(shots, { recursive: true });
    profile = mkdtempSync(join(tmpdir(), 'flashgate-chromium-'));
    // A persistent context is how Playwright takes a --user-data-dir: a fresh temp profile.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 390, height: 844 }, // a phone: the page is mobile first
      locale: 'zh-CN',
      reducedMotion: 'reduce', // screenshots without a bar caught mid-transition
    });
  });

  after(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });
}

// A tab of its own (sessionStorage, hence the sign-in, is per tab).
export async function open(path, { skewMs = 0, fakeClock = false, prepare } = {}) {
  const page = await context.newPage();
  if (prepare) await prepare(page);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  // Timers the test can skip ahead (the clock still runs on by itself).
  if (fakeClock) await page.clock.install();
  if (skewMs) {
    // The visitor's clock is wrong; the page must count on the server's.
    await page.addInitScript((skew) => {
      const real = Date.now.bind(Date);
      Date.now = () => real() + skew;
    }, skewMs);
  }
  await page.goto(`${env.EDGE_URL}${path}`);
  return page;
}

export async function signIn(page, token) {
  await page.click('#signin summary');
  await page.fill('#token', token);
  await page.click('#save');
  await page.waitForSelector('#signin:not([open])', { timeout: 5000 });
}

export const outcome = (page, name, timeout = 10000) => page.waitForSelector(`main[data-outcome="${name}"]`, { timeout });
export const text = (page, sel) => page.locator(sel).textContent();
export const shot = (page, name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

// Answers a routed request 503 busy, as an edge that stopped waiting for the origin.
export const busy = (route) => route.fulfill({
  status: 503,
  headers: { 'retry-after': '1', 'cache-control': 'no-store' },
  contentType: 'application/json; charset=utf-8',
  body: JSON.stringify({ status: 'busy' }),
});

// Another shopper, straight to the edge API with one browser-like client (a receipt is
// bound to its client).
const UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 flashgate-page-e2e';
export async function api(method, path, { token, ticket, receipt } = {}) {
  const headers = { 'user-agent': UA, accept: 'application/json', 'accept-language': 'zh-CN', 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (ticket) headers['x-ticket'] = ticket;
  if (receipt) headers['x-room-receipt'] = receipt;
  const r = await fetch(`${env.EDGE_URL}${path}`, { method, headers, body: method === 'POST' ? '{}' : undefined });
  return { status: r.status, body: await r.json().catch(() => ({})) };
}
