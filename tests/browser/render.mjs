// The console page against a made-up cluster, in Debian's chromium: the
// states a healthy test cluster does not show (a node down, a bad record, a
// drain that could not finish and one under way, a VM handed over, failed,
// down with its node, never started; a queued migration, a failed and a
// cancelled one, an open and a stale tip).  The page's files are served
// from share/console/ by request interception: no server, no cluster.
// Also checks what every state-changing request carries (X-Kvmove: 1, a
// JSON body), that a refusal's {"error"} is shown, and logging out.
//
//   node tests/browser/render.mjs [--chromium /usr/bin/chromium] [--out FILE.png]
//
// Exit 0 when every check holds; 1 with the failed checks on stderr.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const share = path.join(here, '..', '..', 'share', 'console');
const argv = process.argv.slice(2);
const opt = (k, d) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : d);
const GiB = 1024 * 1024 * 1024;
const MiB = 1024 * 1024;

const cluster = {
  rev: 42,
  nodes: [
    { name: 'h1', state: 'up', 'migration-limit': 2, maintenance: false,
      record: { 'mgmt-addr': '10.10.0.1', cpus: 4, 'cpus-used': 2, 'ram-total': 8 * GiB, 'ram-used': 7.5 * GiB, load: [3.9, 1, 1] } },
    { name: 'h2', state: 'maintenance', 'migration-limit': 1, maintenance: true,
      record: { cpus: 4, 'cpus-used': 1, 'ram-total': 8 * GiB, 'ram-used': GiB, load: [0.2, 0, 0] },
      drain: { state: 'drain-incomplete', moved: 2, remaining: 1, stuck: { pinned: 'no node can take VM pinned: h1: its agent cannot reach the VM\'s storage' } } },
    { name: 'h3', state: 'down', 'migration-limit': 1, maintenance: false, config: { maintenance: false } },
    { name: 'h4', state: 'bad record', problem: 'not JSON', 'migration-limit': 1, maintenance: false },
    { name: 'h5', state: 'maintenance', 'migration-limit': 1, maintenance: true,
      record: { cpus: 2, 'cpus-used': 1, 'ram-total': 4 * GiB, 'ram-used': GiB, load: [0, 0, 0] },
      drain: { state: 'draining', moved: 1, remaining: 2, 'eta-s': 12,
        'in-flight': { vm: 'b', to: 'h1', progress: { total: 100 * MiB, remaining: 40 * MiB, transferred: 60 * MiB, round: 1 } } } },
    { name: 'h6', state: 'up', 'migration-limit': 1, maintenance: false, slots: { 0: 'mr' },
      record: { cpus: 2, 'cpus-used': 0, 'ram-total': 4 * GiB, 'ram-used': 0, load: [0.1, 0, 0] } },
  ],
  vms: [
    { name: 'a', spec: { mem: 512 * MiB, cpus: 2, cpu: 'x86-64-v2' }, owner: 'h1', status: { node: 'h1', state: 'running' } },
    { name: 'b', spec: { mem: GiB, cpus: 1 }, owner: 'free:m1', status: { node: 'h5', state: 'running' } },
    { name: 'c', spec: { mem: 256 * MiB, cpus: 1 }, owner: null, status: { node: 'h1', state: 'failed', reason: 'exit 1' } },
    { name: 'd', spec: { mem: 256 * MiB, cpus: 1 }, owner: 'h3', status: { node: 'h3', state: 'node-down' } },
    { name: 'e', spec: { mem: 256 * MiB, cpus: 1 }, status: null },
  ],
  migrations: {
    queued: [{ id: 'mq', vm: 'a', from: 'h1', 'requested-to': null, to: null, state: 'queued', reason: 'queued: waiting for a migration slot on h1' }],
    running: [{ id: 'mr', vm: 'b', from: 'h5', to: 'h6', state: 'running',
      progress: { status: 'active', transferred: 60 * MiB, remaining: 40 * MiB, total: 100 * MiB, round: 2, 'expected-downtime-ms': 30, 'total-time-ms': 1000 } }],
    finished: [
      { id: 'mf', vm: 'c', from: 'h1', to: 'h2', state: 'failed', reason: 'connection refused', requested: 1764780000, started: 1764780001, finished: 1764780003 },
      { id: 'mc', vm: 'a', from: 'h1', to: 'h2', state: 'cancelled', reason: 'cancelled by the user', requested: 1764780010, finished: 1764780011 },
    ],
  },
  tips: [
    { id: 't1', vm: 'a', from: 'h1', to: 'h6', state: 'open', reason: 'move a from h1 to h6', before: { from: 97, to: 0 }, after: { from: 49, to: 48 }, created: 1764780000 },
    { id: 't2', vm: 'a', from: 'h1', to: 'h2', state: 'stale' },
  ],
  audit: [
    { t: 1764780000, who: 'alice', role: 'admin', action: 'vms.start', target: 'a', status: 409, result: 'no node can run a' },
    { t: 1764780005, who: 'bob', role: 'read', action: 'vms.stop', target: 'a', status: 403, result: 'bob may only read' },
  ],
};

const failures = [];
function expect(cond, what, got) {
  if (!cond) failures.push(`${what}: got ${JSON.stringify(got)}`);
}

const posts = [];
const browser = await puppeteer.launch({
  executablePath: opt('--chromium', '/usr/bin/chromium'),
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-dev-shm-usage'],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1440, height: 1000 });
  page.setDefaultTimeout(15000);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.setRequestInterception(true);
  page.on('request', (r) => {
    const u = new URL(r.url());
    const json = (status, body) => r.respond({ status, contentType: 'application/json', body: body === null ? '' : JSON.stringify(body) });
    const file = { '/': 'index.html', '/console.js': 'console.js', '/console.css': 'console.css' }[u.pathname];
    if (u.origin !== 'http://console.test') return r.abort();
    if (file) {
      const type = file.endsWith('.js') ? 'text/javascript' : file.endsWith('.css') ? 'text/css' : 'text/html';
      return r.respond({ status: 200, contentType: type, body: fs.readFileSync(path.join(share, file)) });
    }
    if (r.method() === 'POST') {
      posts.push({ path: u.pathname, headers: r.headers(), body: r.postData() });
      if (u.pathname === '/api/logout') return json(204, null);
      if (u.pathname === '/api/tips/t1/apply') return json(409, { error: 'tip t1 is stale: a left h1' });
      return json(200, { result: 'done' });
    }
    if (u.pathname === '/api/whoami') return json(200, { name: 'alice', role: 'admin' });
    if (u.pathname === '/api/cluster') return json(200, cluster);
    if (u.pathname === '/api/events')
      return r.respond({ status: 200, contentType: 'text/event-stream', body: 'event: change\ndata: {"rev": 43}\n\n' });
    return json(404, { error: 'no such path' });
  });
  await page.goto('http://console.test/');
  await page.waitForSelector('#nodes > .card[data-node="h6"]');

  const cards = Object.fromEntries(await page.$$eval('#nodes > .card', (cs) => cs.map((c) => [c.dataset.node, {
    state: c.dataset.state, text: c.querySelector('[data-role=state]').textContent,
    vms: c.querySelector('[data-role=vms]').textContent, slots: c.querySelector('[data-role=slots]').textContent,
    all: c.innerText, button: c.querySelector('button[data-action=maintenance]').textContent,
  }])));
  expect(cards.h1.state === 'up' && cards.h1.vms === 'VMs: a', 'h1: up, runs a (not the failed c)', cards.h1);
  expect(/CPU load 3\.90 \/ 4 CPUs/.test(cards.h1.all) && /RAM 7\.5 GiB \/ 8 GiB/.test(cards.h1.all), 'h1 bars', cards.h1.all);
  expect(cards.h1.slots === 'migration slots: 0 of 2 in use', 'h1 slots', cards.h1.slots);
  expect(cards.h2.state === 'drain-incomplete' && cards.h2.text === 'maintenance: drain-incomplete (2 moved, 1 cannot move)'
    && /pinned stays: no node can take VM pinned/.test(cards.h2.all) && cards.h2.button === 'Maintenance off', 'h2: drain-incomplete, pinned stays', cards.h2);
  expect(cards.h3.state === 'down' && cards.h3.vms === 'VMs: d', 'h3: down with d', cards.h3);
  expect(cards.h4.state === 'bad' && cards.h4.text === 'bad record: not JSON', 'h4: bad record', cards.h4);
  expect(cards.h5.state === 'draining' && cards.h5.text === 'maintenance: draining 1 of 3 moved, ETA 12 s'
    && /moving b → h1 60%/.test(cards.h5.all) && cards.h5.vms === 'VMs: b', 'h5: draining, b in flight', cards.h5);
  expect(cards.h6.slots === 'migration slots: 1 of 1 in use', 'h6: slots from the node record', cards.h6.slots);

  const vms = Object.fromEntries(await page.$$eval('#vms tbody tr', (rs) => rs.map((r) => [r.dataset.vm, {
    state: r.dataset.state, node: r.dataset.node, cells: Array.from(r.cells).slice(1, 6).map((c) => c.textContent),
    options: Array.from(r.querySelectorAll('option')).map((o) => o.value),
    enabled: Array.from(r.querySelectorAll('button')).filter((b) => !b.disabled).map((b) => b.dataset.action),
  }])));
  expect(vms.a.cells.join('|') === 'running, migrating|h1|512 MiB|2|x86-64-v2', 'a: row', vms.a.cells);
  expect(vms.a.options.join() === 'best,h6', 'a: destinations are best and the up nodes but its own', vms.a.options);
  expect(vms.a.enabled.join() === 'stop', 'a: migrating, only stop', vms.a.enabled);
  expect(vms.b.state === 'handing over' && vms.b.node === 'h5', 'b: handing over', vms.b);
  expect(vms.c.state === 'failed' && vms.c.enabled.includes('start'), 'c: failed, can start', vms.c);
  expect(vms.d.state === 'node-down', 'd: node-down', vms.d);
  expect(vms.e.state === 'stopped' && vms.e.enabled.join() === 'start', 'e: stopped, only start', vms.e);

  const flight = await page.$$eval('#migrations tbody tr', (rs) => rs.map((r) => ({
    id: r.dataset.migration, state: r.dataset.state, pct: r.dataset.progress, cells: Array.from(r.cells).slice(0, 7).map((c) => c.textContent),
  })));
  expect(flight.length === 2 && flight[0].id === 'mr' && flight[0].pct === '60.0' && flight[0].cells[4] === '2' && flight[0].cells[5] === '30 ms'
    && /60% {2}60\.0 \/ 100\.0 MiB sent/.test(flight[0].cells[3]), 'running migration row', flight[0]);
  expect(flight[1] && flight[1].id === 'mq' && flight[1].cells[1] === 'h1 → best' && flight[1].cells[2] === 'queued: waiting for a migration slot on h1',
    'queued migration row', flight[1]);

  const hist = await page.$$eval('#history tbody tr', (rs) => rs.map((r) => Array.from(r.cells).slice(1, 9).map((c) => c.textContent)));
  expect(hist.length === 2 && hist[0].join('|') === 'a|h1 → h2|live|-|-|-|cancelled|cancelled by the user'
    && hist[1].join('|') === 'c|h1 → h2|live|2.0 s|-|-|failed|connection refused', 'history, newest first', hist);

  const tips = await page.$$eval('#tips tbody tr', (rs) => rs.map((r) => r.dataset.tip));
  expect(tips.join() === 't1', 'only the open tip', tips);
  const log = await page.$$eval('#events li', (ls) => ls.map((l) => `${l.dataset.who} ${l.dataset.status} ${l.className}`));
  expect(log.join('|') === 'bob 403 refused|alice 409 refused', 'event log, newest first', log);

  // actions: the request each sends, and a refusal shown
  await page.click('#tips tr[data-tip="t1"] button[data-action=apply]');
  await page.waitForFunction(() => document.querySelector('#message').dataset.kind === 'error');
  const msg = await page.$eval('#message', (m) => ({ text: m.textContent, status: m.dataset.status, hidden: m.hidden }));
  expect(!msg.hidden && msg.status === '409' && msg.text === 'apply tip t1: refused (409): tip t1 is stale: a left h1', 'the refusal shown', msg);
  await page.click('#nodes > .card[data-node="h2"] button[data-action=maintenance]');
  await page.click('#vms tr[data-vm="e"] button[data-action=start]');
  await page.click('#migrations tr[data-migration="mr"] button[data-action=cancel]');
  await page.waitForFunction(() => document.querySelector('#message').dataset.kind === 'ok');
  await page.waitForFunction(() => !document.querySelector('#migrations tr[data-migration="mr"] button').disabled);
  const want = {
    '/api/tips/t1/apply': '{}', '/api/nodes/h2/maintenance': '{"on":false}', '/api/vms/e/start': '{}', '/api/migrations/mr/cancel': '{}',
  };
  for (const [p, body] of Object.entries(want)) {
    const r = posts.find((x) => x.path === p);
    expect(r && r.headers['x-kvmove'] === '1' && r.headers['content-type'] === 'application/json' && r.body === body,
      `POST ${p}: X-Kvmove: 1, JSON ${body}`, r);
  }
  if (opt('--out')) await page.screenshot({ path: opt('--out'), fullPage: true });

  await page.click('#logout');
  await page.waitForSelector('#login:not([hidden])', { visible: true });
  expect(await page.$eval('#app', (a) => a.hidden), 'logged out: the cluster is hidden', false);
  expect(!errors.length, 'no script error in the page', errors);
} finally {
  await browser.close();
}
if (failures.length) {
  process.stderr.write(`render.mjs: ${failures.length} check(s) failed:\n  ${failures.join('\n  ')}\n`);
  process.exit(1);
}
process.stdout.write('render.mjs: every check holds\n');
