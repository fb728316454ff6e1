// Drives the kvmove management console in Debian's chromium (headless) the
// way an operator would: by typing and clicking.  Run by
// tests/integration/test_console_browser.py against a live cluster; it can
// also be run by hand against any console:
//
//   node tests/browser/console.mjs --url http://127.0.0.1:8480 --token ADMIN \
//       --read-token READER --out /tmp/shots --vm web1 --to h3 --ro-vm db1 --drain h2 \
//       --quick-vm app1 --cancel-vm busy1 --nodes h1,h2,h3 --vms web1,db1,app1,busy1
//
// Steps (a screenshot after each, in --out):
//   1. a wrong token is refused (the 401 message shows); the read-only user
//      signs in, clicks migrate on --ro-vm and sees the 403 message
//   2. the admin signs in through the form; every node card and VM row shows
//   3. migrate --vm to --to by choosing the node and clicking Migrate: the
//      migration's row appears, its progress bar moves, then its row lands
//      in the history with a downtime figure
//   3b. with --cancel-vm: migrate it to --to, and once its bar moves click
//      Cancel: the row lands in the history as cancelled
//   4. maintenance on for --drain by its button: the card says draining,
//      then drained
//   5. --quick-vm: Stop, then Start, then Quick (to "best") by its buttons:
//      stopped, running, then its quick migration lands in the history
//   6. the event log shows the admin's actions and the reader's refusal
// It prints one JSON object (what it saw) on stdout and exits 0, or prints
// what went wrong on stderr and exits 1.
import fs from 'node:fs';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

function parseArgs(argv) {
  const a = {
    chromium: '/usr/bin/chromium', timeout: 120, vm: 'web1', to: 'h3', 'ro-vm': 'db1', drain: 'h2',
    'quick-vm': 'app1',
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (!k.startsWith('--') || i + 1 >= argv.length) throw new Error(`bad argument ${k}`);
    a[k.slice(2)] = argv[++i];
  }
  for (const need of ['url', 'token', 'read-token', 'out'])
    if (!a[need]) throw new Error(`--${need} is required`);
  a.timeout = Number(a.timeout) * 1000;
  return a;
}

const args = parseArgs(process.argv.slice(2));
const t0 = Date.now();
const seen = { steps: [], shots: [], external: [], pageErrors: [] };
const log = (msg) => process.stderr.write(`[browser ${((Date.now() - t0) / 1000).toFixed(1)} s] ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
fs.mkdirSync(args.out, { recursive: true });

let shotNo = 0;
async function shot(page, name) {
  const file = path.join(args.out, `${String(++shotNo).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  seen.shots.push(file);
  log(`screenshot ${file}`);
}

function step(what, extra) {
  seen.steps.push({ t: (Date.now() - t0) / 1000, what, ...(extra || {}) });
  log(what + (extra ? ` ${JSON.stringify(extra)}` : ''));
}

// a page whose every request is checked to stay on the console, and whose
// script errors are collected (any is a failure)
async function openPage(browser, label) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1440, height: 1000 });
  page.setDefaultTimeout(args.timeout);
  const origin = new URL(args.url).origin;
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(origin + '/') && u !== origin && !u.startsWith('data:')) seen.external.push(u);
  });
  page.on('pageerror', (e) => { seen.pageErrors.push(`${label}: ${e.message}`); log(`page error (${label}): ${e.message}`); });
  // the console's Content-Security-Policy must let the page do all it does
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) {
      seen.pageErrors.push(`${label}: ${m.text()}`);
      log(`CSP violation (${label}): ${m.text()}`);
    }
  });
  return page;
}

// Sign in through the form; resolves once the page shows the cluster.
async function signIn(page, token, who) {
  await page.goto(args.url, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#login:not([hidden]) #token', { visible: true });
  await page.type('#token', token);
  await page.click('#login-submit');
  await page.waitForSelector('#app:not([hidden])', { visible: true });
  await page.waitForFunction((name) => document.querySelector('#user-name').textContent === name, {}, who);
}

async function waitMessage(page, kind, timeout = 30000) {
  await page.waitForFunction((k) => {
    const m = document.querySelector('#message');
    return m && !m.hidden && m.dataset.kind === k;
  }, { timeout }, kind);
  return page.$eval('#message', (m) => ({ text: m.textContent, status: m.dataset.status || null }));
}

async function waitCluster(page, nodes, vms) {
  await page.waitForFunction((nodes, vms) => nodes.every((n) => document.querySelector(`#nodes [data-node="${n}"]`))
    && vms.every((v) => {
      const tr = document.querySelector(`#vms tr[data-vm="${v}"]`);
      return tr && tr.dataset.state === 'running';
    }), {}, nodes, vms);
}

async function main() {
  const browser = await puppeteer.launch({
    executablePath: args.chromium,
    headless: true,
    // as root in a container: no sandbox; no first-run chatter
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-dev-shm-usage'],
  });
  try {
    const nodes = (args.nodes || '').split(',').filter(Boolean);
    const vms = (args.vms || '').split(',').filter(Boolean);

    // ---- 1. a wrong token, then the read-only user ----
    const rctx = await browser.createBrowserContext();
    const rpage = await openPage(rctx, 'reader');
    await rpage.setViewport({ width: 1440, height: 1000 });
    await rpage.goto(args.url, { waitUntil: 'domcontentloaded' });
    await rpage.waitForSelector('#login:not([hidden]) #token', { visible: true });
    await rpage.type('#token', '0'.repeat(64));
    await rpage.click('#login-submit');
    const bad = await waitMessage(rpage, 'error');
    step('wrong token refused', bad);
    seen.wrongToken = bad;
    await shot(rpage, 'wrong-token');
    await rpage.$eval('#token', (e) => { e.value = ''; });
    await rpage.type('#token', args['read-token']);
    await rpage.click('#login-submit');
    await rpage.waitForSelector('#app:not([hidden])', { visible: true });
    seen.readerRole = await rpage.$eval('#user-role', (e) => e.textContent);
    await waitCluster(rpage, nodes, [args['ro-vm']]);
    const roRow = `#vms tr[data-vm="${args['ro-vm']}"]`;
    await rpage.click(`${roRow} button[data-action=migrate]`);
    const refused = await waitMessage(rpage, 'error');
    seen.readOnly = refused;
    step(`read-only user clicked migrate ${args['ro-vm']}`, refused);
    await shot(rpage, 'read-only-refused');
    await rpage.click('#logout');
    await rpage.waitForSelector('#login:not([hidden])', { visible: true });
    await rctx.close();

    // ---- 2. the admin signs in ----
    const page = await openPage(browser, 'admin');
    await signIn(page, args.token, args['admin-name'] || 'admin');
    seen.adminRole = await page.$eval('#user-role', (e) => e.textContent);
    await waitCluster(page, nodes, vms);
    await page.waitForFunction(() => document.querySelector('#live').dataset.state === 'open');
    seen.nodeCards = await page.$$eval('#nodes > .card[data-node]', (cs) => cs.map((c) => ({
      node: c.dataset.node, state: c.dataset.state, text: c.innerText.replace(/\s+/g, ' ').trim(),
    })));
    seen.vmRows = await page.$$eval('#vms tbody tr', (rs) => rs.map((r) => ({
      vm: r.dataset.vm, state: r.dataset.state, node: r.dataset.node,
      cells: Array.from(r.cells).slice(0, 6).map((c) => c.textContent),
    })));
    step('admin signed in; cluster shown', { cards: seen.nodeCards.length, vms: seen.vmRows.length });
    await shot(page, 'cluster');

    // ---- 3. migrate by clicking ----
    const row = `#vms tr[data-vm="${args.vm}"]`;
    const from = await page.$eval(row, (r) => r.dataset.node);
    const options = await page.$$eval(`${row} select[data-role=migrate-to] option`, (os) => os.map((o) => o.value));
    seen.migrateOptions = options;
    if (!options.includes(args.to)) throw new Error(`${args.vm}'s destinations ${options} lack ${args.to}`);
    await page.select(`${row} select[data-role=migrate-to]`, args.to);
    await page.click(`${row} button[data-action=migrate]`);
    step(`clicked migrate ${args.vm}: ${from} -> ${args.to}`);
    const inflight = `#migrations tr[data-vm="${args.vm}"]`;
    await page.waitForSelector(inflight, { timeout: 30000 });
    const id = await page.$eval(inflight, (r) => r.dataset.migration);
    seen.migration = { id, from, to: args.to, progress: [], states: [] };
    step('its row appeared in the migrations in flight', { id });
    // watch the bar until the row goes
    let midShot = false;
    const deadline = Date.now() + args.timeout;
    for (;;) {
      const r = await page.$eval(`#migrations tr[data-migration="${id}"]`, (tr) => ({
        state: tr.dataset.state,
        pct: Number(tr.dataset.progress),
        width: tr.querySelector('.fill').style.width,
        label: tr.querySelector('.bar-label').textContent,
        round: tr.querySelector('[data-role=round]').textContent,
        downtime: tr.querySelector('[data-role=downtime]').textContent,
        eta: tr.querySelector('[data-role=eta]').textContent,
        points: Number(tr.querySelector('svg.chart')?.getAttribute('data-points') || 0),
      })).catch(() => null);
      if (!r) break;
      const last = seen.migration.progress[seen.migration.progress.length - 1];
      if (!last || last.pct !== r.pct || last.state !== r.state || last.points !== r.points)
        seen.migration.progress.push({ t: (Date.now() - t0) / 1000, ...r });
      if (!midShot && r.pct > 0 && r.points >= 1) {
        midShot = true;
        await shot(page, 'migration-progress');
      }
      if (Date.now() > deadline) throw new Error(`the migration ${id} is still in flight after ${args.timeout / 1000} s`);
      await sleep(100);
    }
    const moved = new Set(seen.migration.progress.map((p) => p.pct).filter((p) => p > 0));
    step('its row left the migrations in flight', { distinctProgress: moved.size });
    const hist = `#history tr[data-migration="${id}"]`;
    await page.waitForFunction((sel) => {
      const tr = document.querySelector(sel);
      const d = tr && tr.querySelector('td.downtime');
      return tr && tr.dataset.result && d && d.dataset.ms !== '';
    }, { timeout: 30000 }, hist);
    seen.history = await page.$eval(hist, (tr) => ({
      result: tr.dataset.result,
      downtimeMs: Number(tr.querySelector('td.downtime').dataset.ms),
      cells: Array.from(tr.cells).slice(0, 9).map((c) => c.textContent),
      chartPoints: Number(tr.querySelector('svg.chart')?.getAttribute('data-points') || 0),
    }));
    await page.waitForFunction((sel, to) => document.querySelector(sel)?.dataset.node === to, {}, row, args.to);
    step('its row is in the history', seen.history);
    await shot(page, 'migration-history');

    // ---- 3b. a migration cancelled by its button while it runs ----
    if (args['cancel-vm']) {
      const cvm = args['cancel-vm'];
      const crow = `#vms tr[data-vm="${cvm}"]`;
      await page.waitForFunction((sel) => !document.querySelector(`${sel} button[data-action=migrate]`).disabled, {}, crow);
      await page.select(`${crow} select[data-role=migrate-to]`, args.to);
      await page.click(`${crow} button[data-action=migrate]`);
      const cflight = `#migrations tr[data-vm="${cvm}"]`;
      await page.waitForFunction((sel) => {
        const tr = document.querySelector(sel);
        return tr && tr.dataset.state === 'running' && Number(tr.dataset.progress) > 0;
      }, { timeout: 60000 }, cflight);
      const cid = await page.$eval(cflight, (r) => r.dataset.migration);
      const before = await page.$eval(cflight, (r) => ({ pct: Number(r.dataset.progress), label: r.querySelector('.bar-label').textContent }));
      step(`clicked migrate ${cvm} -> ${args.to}; running`, { id: cid, ...before });
      await shot(page, 'cancel-running');
      await page.click(`#migrations tr[data-migration="${cid}"] button[data-action=cancel]`);
      await page.waitForFunction((id) => !document.querySelector(`#migrations tr[data-migration="${id}"]`)
        && document.querySelector(`#history tr[data-migration="${id}"]`)?.dataset.result, {}, cid);
      seen.cancel = await page.$eval(`#history tr[data-migration="${cid}"]`, (tr) => ({
        id: tr.dataset.migration, result: tr.dataset.result,
        cells: Array.from(tr.cells).slice(0, 9).map((c) => c.textContent),
      }));
      seen.cancel.message = await page.$eval('#message', (m) => m.textContent);
      seen.cancel.node = await page.$eval(crow, (r) => r.dataset.node);
      step(`clicked cancel: ${seen.cancel.result}`, seen.cancel);
      await shot(page, 'cancelled');
    }

    // ---- 4. maintenance by clicking ----
    const card = `#nodes > .card[data-node="${args.drain}"]`;
    await page.click(`${card} button[data-action=maintenance]`);
    step(`clicked maintenance on for ${args.drain}`);
    const states = [];
    let drainShot = false;
    const ddeadline = Date.now() + args.timeout;
    for (;;) {
      const c = await page.$eval(card, (e) => ({
        state: e.dataset.state, text: e.querySelector('[data-role=state]').textContent,
        vms: e.querySelector('[data-role=vms]').textContent,
      }));
      if (!states.length || states[states.length - 1].text !== c.text)
        states.push({ t: (Date.now() - t0) / 1000, ...c });
      if (c.state === 'draining' && !drainShot) {
        drainShot = true;
        await shot(page, 'draining');
      }
      if (c.state === 'drained' && /none/.test(c.vms)) break;
      if (c.state === 'drain-incomplete') throw new Error(`${args.drain}: ${c.text}`);
      if (Date.now() > ddeadline) throw new Error(`${args.drain} not drained after ${args.timeout / 1000} s: ${c.text}`);
      await sleep(100);
    }
    seen.drain = states;
    step(`${args.drain} shows drained`, states[states.length - 1]);
    await shot(page, 'drained');

    // ---- 5. stop, start and quick-migrate one VM by its buttons ----
    const qrow = `#vms tr[data-vm="${args['quick-vm']}"]`;
    const rowState = (want) => page.waitForFunction((sel, w) => {
      const tr = document.querySelector(sel);
      return tr && tr.dataset.state === w && !tr.dataset.migrating;
    }, {}, qrow, want);
    await page.click(`${qrow} button[data-action=stop]`);
    await rowState('stopped');
    step(`clicked stop ${args['quick-vm']}: stopped`);
    await page.click(`${qrow} button[data-action=start]`);
    await rowState('running');
    const qfrom = await page.$eval(qrow, (r) => r.dataset.node);
    step(`clicked start ${args['quick-vm']}: running on ${qfrom}`);
    await page.waitForFunction((sel) => !document.querySelector(`${sel} button[data-action=quick]`).disabled, {}, qrow);
    await page.select(`${qrow} select[data-role=migrate-to]`, 'best');
    await page.click(`${qrow} button[data-action=quick]`);
    await page.waitForFunction((vm, from) => {
      const tr = Array.from(document.querySelectorAll(`#history tr[data-vm="${vm}"]`))
        .find((r) => r.cells[3] && r.cells[3].textContent === 'quick' && r.cells[2].textContent.startsWith(from));
      return tr && tr.dataset.result && tr.querySelector('td.downtime').dataset.ms !== '';
    }, {}, args['quick-vm'], qfrom);
    await rowState('running');
    seen.quick = await page.$eval(`#history tr[data-vm="${args['quick-vm']}"]`, (tr) => ({
      id: tr.dataset.migration, result: tr.dataset.result,
      downtimeMs: Number(tr.querySelector('td.downtime').dataset.ms),
      cells: Array.from(tr.cells).slice(0, 9).map((c) => c.textContent),
    }));
    seen.quick.node = await page.$eval(qrow, (r) => r.dataset.node);
    step(`clicked quick (best) for ${args['quick-vm']}`, seen.quick);
    await shot(page, 'quick-migration');

    // one VM's history: choosing --vm leaves only its rows
    await page.select('#history-vm', args.vm);
    await page.waitForFunction((vm) => {
      const rows = Array.from(document.querySelectorAll('#history tbody tr'));
      return rows.length > 0 && rows.every((r) => r.dataset.vm === vm);
    }, {}, args.vm);
    seen.historyOfVm = await page.$$eval('#history tbody tr', (rs) => rs.map((r) => r.dataset.vm));
    await page.select('#history-vm', '');
    await page.waitForFunction(() => new Set(Array.from(document.querySelectorAll('#history tbody tr'))
      .map((r) => r.dataset.vm)).size > 1);
    step(`history of ${args.vm} alone: ${seen.historyOfVm.length} row(s)`);

    // ---- 6. the event log ----
    await page.waitForFunction(() => document.querySelectorAll('#events li').length >= 2);
    seen.events = await page.$$eval('#events li', (ls) => ls.map((l) => ({
      action: l.dataset.action, who: l.dataset.who, status: l.dataset.status, text: l.textContent,
    })));
    seen.liveState = await page.$eval('#live', (e) => e.dataset.state);
    seen.vmRowsAfter = await page.$$eval('#vms tbody tr', (rs) => rs.map((r) => ({
      vm: r.dataset.vm, state: r.dataset.state, node: r.dataset.node })));
    await page.setViewport({ width: 1440, height: 900 });
    await shot(page, 'console');
    seen.seconds = (Date.now() - t0) / 1000;
  } finally {
    await browser.close();
  }
}

main().then(() => {
  process.stdout.write(JSON.stringify(seen) + '\n');
  if (seen.pageErrors.length) {
    process.stderr.write(`script errors in the page: ${seen.pageErrors.join('; ')}\n`);
    process.exit(1);
  }
}, (e) => {
  process.stderr.write(`FAILED: ${e.stack || e}\n`);
  process.stdout.write(JSON.stringify(seen) + '\n');
  process.exit(1);
});
