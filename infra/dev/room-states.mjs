// Composes docs/img/room-states.png, the picture of the room's states in docs/room.md, from
// the screenshots infra/tests/page-room.test.mjs leaves in target/page-screenshots/: Chromium
// renders them side by side, at reduced scale, with a caption each.
//   node infra/dev/room-states.mjs      (after a run of page-room.test.mjs)
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const root = new URL('../..', import.meta.url).pathname;
const shots = join(root, 'target', 'page-screenshots');
const out = join(root, 'docs', 'img', 'room-states.png');
const states = [
  ['room-1-registered', '已登记抽签', 'registered for the draw'],
  ['room-2-waiting', '排队中: 位置与倒计时', 'in line: position, countdown'],
  ['room-3-turn', '轮到您了', 'your turn'],
  ['room-4-confirmed', '抢购成功', 'order confirmed'],
  ['room-5-sold-out', '排队中售罄', 'sold out while waiting'],
];

const missing = states.filter(([f]) => !existsSync(join(shots, `${f}.png`))).map(([f]) => f);
if (missing.length) {
  console.error(`missing screenshots (run infra/tests/page-room.test.mjs first): ${missing.join(', ')}`);
  process.exit(1);
}
const figures = states.map(([f, zh, en]) => {
  const data = readFileSync(join(shots, `${f}.png`)).toString('base64');
  return `<figure><img src="data:image/png;base64,${data}"><figcaption>${zh}<br><small>${en}</small></figcaption></figure>`;
}).join('');
const html = `<!doctype html><meta charset="utf-8"><style>
  body { margin: 0; background: #fff; font: 13px system-ui, "Noto Sans CJK SC", sans-serif; color: #1d1d1f; }
  main { display: flex; gap: 12px; padding: 12px; width: max-content; }
  figure { margin: 0; width: 240px; text-align: center; }
  img { width: 240px; height: 470px; object-fit: cover; object-position: top; border: 1px solid #d5d6d9; border-radius: 10px; }
  small { color: #5f6368; }
</style><main>${figures}</main>`;

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ deviceScaleFactor: 1 });
  await page.setContent(html);
  mkdirSync(join(root, 'docs', 'img'), { recursive: true });
  await page.locator('main').screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
}
