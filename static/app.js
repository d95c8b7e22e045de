// The activity page: countdown on the server's clock, one guarded buy button, clear states.
(() => {
  const $ = (id) => document.getElementById(id);
  const eventId = new URLSearchParams(location.search).get('event') || 'demo';
  const api = `/api/events/${encodeURIComponent(eventId)}`;
  let offset = 0; // server clock minus ours, corrected for half the round trip
  let info = null;
  let busy = false;
  let done = false;

  const token = () => sessionStorage.getItem('flashgate.token') || '';
  const say = (text) => { $('status').textContent = text; };

  async function call(method, path, ticket) {
    const headers = {};
    if (token()) headers.authorization = `Bearer ${token()}`;
    if (ticket) headers['x-ticket'] = ticket;
    if (method === 'POST') headers['content-type'] = 'application/json';
    const r = await fetch(path, { method, headers, body: method === 'POST' ? '{}' : undefined });
    let body = {};
    try { body = await r.json(); } catch { /* empty body */ }
    return { status: r.status, body, retryAfter: Number(r.headers.get('retry-after')) || 1 };
  }

  async function refresh() {
    const sent = Date.now();
    const r = await call('GET', api);
    if (r.status !== 200) { $('name').textContent = r.body.message || '活动不存在'; return; }
    const rtt = Date.now() - sent;
    offset = Date.parse(r.body.server_time) + rtt / 2 - Date.now();
    info = r.body;
    $('name').textContent = info.name;
    $('stock').textContent = info.stock_left;
    $('total').textContent = info.stock_total;
    tick();
  }

  function tick() {
    if (!info) return;
    const now = Date.now() + offset;
    const starts = Date.parse(info.starts_at);
    const ends = Date.parse(info.ends_at);
    const button = $('buy');
    if (now < starts) {
      const s = Math.ceil((starts - now) / 1000);
      $('countdown').textContent = `距开始 ${Math.floor(s / 3600)}:${String(Math.floor(s / 60) % 60).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
      button.disabled = true; button.textContent = '即将开始';
    } else if (now >= ends) {
      $('countdown').textContent = '活动已结束';
      button.disabled = true; button.textContent = '已结束';
    } else if (info.state === 'sold_out' || Number(info.stock_left) === 0) {
      $('countdown').textContent = '';
      button.disabled = true; button.textContent = '已售罄';
    } else {
      $('countdown').textContent = '抢购进行中';
      button.disabled = busy || done; if (!busy && !done) button.textContent = '立即抢购';
    }
  }

  const wait = (ms) => new Promise((r) => setTimeout(r, ms));

  async function pollOrder() {
    let delay = 500;
    for (let i = 0; i < 20; i += 1) {
      const r = await call('GET', `${api}/order`);
      if (r.body.status === 'confirmed') { say(`订单已确认 (${r.body.order_id})`); return; }
      if (r.body.status === 'failed') { say('订单创建失败, 库存已退回'); done = false; return; }
      await wait(delay); delay = Math.min(delay * 2, 5000);
    }
  }

  async function buy() {
    if (busy || done) return;
    if (!token()) { say('请先登录'); $('signin').open = true; return; }
    busy = true; $('buy').disabled = true; $('buy').textContent = '抢购中…';
    try {
      for (let attempt = 0; attempt < 5; attempt += 1) {
        const t = await call('POST', `${api}/ticket`);
        const r = t.status === 200 ? await call('POST', `${api}/purchase`, t.body.ticket) : t;
        if (r.status === 429 || r.status === 503) {
          say('活动火爆, 请稍后再试');
          await wait(r.retryAfter * 1000 + Math.random() * 1000); // jitter: never a tight loop
          continue;
        }
        const messages = {
          202: '抢购成功, 订单处理中', 200: '您已抢购成功', 409: '已售罄', 425: '活动尚未开始',
          410: '活动已结束', 401: '请先登录', 403: '请求被拒绝',
        };
        say(r.body.message || messages[r.status] || '出错了, 请稍后再试');
        if (r.status === 202 || r.status === 200) { done = true; await pollOrder(); }
        if (r.status === 409) { info.stock_left = 0; }
        return;
      }
    } finally {
      busy = false; tick();
    }
  }

  $('buy').addEventListener('click', buy);
  $('save').addEventListener('click', () => {
    sessionStorage.setItem('flashgate.token', $('token').value.trim());
    say('已登录'); $('signin').open = false;
  });
  refresh();
  setInterval(tick, 250);
  setInterval(refresh, 5000); // gentle: stock may lag by a second anyway
})();
