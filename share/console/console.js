// kvmove console: the page's code (plain ES2020, no library, no build step).
//
// Everything shown comes from GET /api/cluster, read again on every `change`
// event of GET /api/events (docs/API.md); the records are those of
// docs/CLUSTER.md.  The page keeps only what the cluster does not: the
// progress samples it saw of each migration (for the throughput chart and
// the ETA), so a chart starts when the page first sees its migration.
'use strict';

const MIB = 1024 * 1024;
const MAX_SAMPLES = 400;
const EVENTS_SHOWN = 100;

const state = {
  user: null,            // {name, role} from /api/whoami or /api/login
  cluster: null,         // the last /api/cluster answer
  events: null,          // the EventSource
  retry: null,           // timer re-opening the event stream
  refreshing: false,
  again: false,          // a change arrived while a read was under way
  readError: false,      // the message area shows a failed read
  pending: new Set(),    // actions under way ("migrate:web1"): their buttons stay disabled
  samples: new Map(),    // migration id -> [{ms, tr, rem, tot, round, at}]
};

// ---- small DOM helpers -------------------------------------------------

const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-') || k === 'title' || k === 'type' || k === 'role' || k === 'value')
      e.setAttribute(k, v === true ? '' : String(v));
    else e[k] = v;
  }
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function setText(e, text) {
  text = text === null || text === undefined ? '' : String(text);
  if (e.textContent !== text) e.textContent = text;
}

// Keep parent's children in the order of items, one element per key: an
// element is made once (make) and updated in place (update), so a select's
// choice, a focused button or a chart survives the re-reads.
function syncKeyed(parent, items, keyOf, make, update) {
  const old = new Map();
  for (const ch of Array.from(parent.children)) old.set(ch.dataset.key, ch);
  let prev = null;
  for (const it of items) {
    const k = keyOf(it);
    let node = old.get(k);
    if (node) old.delete(k);
    else {
      node = make(it);
      node.dataset.key = k;
    }
    update(node, it);
    const want = prev ? prev.nextSibling : parent.firstChild;
    if (node !== want) parent.insertBefore(node, want);
    prev = node;
  }
  for (const n of old.values()) n.remove();
}

// ---- formatting --------------------------------------------------------

function fmtBytes(b) {
  if (typeof b !== 'number' || !isFinite(b)) return '-';
  if (b >= 1024 * MIB) return (b / 1024 / MIB).toFixed(b % (1024 * MIB) ? 1 : 0) + ' GiB';
  if (b >= MIB) return (b / MIB).toFixed(b % MIB ? 1 : 0) + ' MiB';
  if (b >= 1024) return (b / 1024).toFixed(0) + ' KiB';
  return b + ' B';
}

function fmtMs(ms) {
  if (typeof ms !== 'number' || !isFinite(ms) || ms < 0) return '-';
  if (ms < 1000) return Math.round(ms) + ' ms';
  if (ms < 60000) return (ms / 1000).toFixed(1) + ' s';
  return Math.floor(ms / 60000) + ' min ' + Math.round((ms % 60000) / 1000) + ' s';
}

function fmtRate(bps) {
  if (typeof bps !== 'number' || !isFinite(bps)) return '-';
  return (bps / MIB).toFixed(bps < 10 * MIB ? 1 : 0) + ' MiB/s';
}

const pad = (n) => String(n).padStart(2, '0');

// t: seconds since the epoch (the records' timestamps)
function fmtTime(t, withDate) {
  if (typeof t !== 'number' || !isFinite(t) || t <= 0) return '-';
  const d = new Date(t * 1000);
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withDate ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms}` : hms;
}

const num = (v) => (typeof v === 'number' && isFinite(v) ? v : null);

// ---- the API -----------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Every call goes through here.  A state-changing one carries X-Kvmove: 1
// (the console refuses a cookie-authenticated change without it) and a JSON
// body; a failure becomes an ApiError with the server's {"error"} message.
async function api(method, path, body) {
  const opt = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (method !== 'GET') {
    opt.headers['X-Kvmove'] = '1';
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body === undefined ? {} : body);
  }
  let r;
  try {
    r = await fetch(path, opt);
  } catch (e) {
    throw new ApiError(0, `the console does not answer (${e.message})`);
  }
  const text = await r.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      data = null;
    }
  }
  if (!r.ok) {
    const msg = data && typeof data.error === 'string' ? data.error : `HTTP ${r.status} ${r.statusText}`;
    // a session that ended (cookie expired, token removed from the file)
    if (r.status === 401 && state.user && path !== '/api/login') signedOut('your session ended: sign in again');
    throw new ApiError(r.status, msg);
  }
  return data;
}

// ---- the message area --------------------------------------------------

let messageTimer = null;

function say(text, kind = 'info', status) {
  const m = $('#message');
  m.textContent = text;
  m.dataset.kind = kind;
  if (status) m.dataset.status = String(status);
  else delete m.dataset.status;
  m.hidden = false;
  clearTimeout(messageTimer);
  // errors stay until the next action (or a click); the rest fade
  if (kind !== 'error') messageTimer = setTimeout(() => { m.hidden = true; }, 8000);
}

// Run a state-changing action from a button: the button stays disabled
// while it runs; success and failure are both said in the message area.
async function act(key, what, fn, done) {
  if (state.pending.has(key)) return;
  state.pending.add(key);
  state.readError = false;
  say(`${what}…`, 'busy');
  if (state.cluster) render(state.cluster);
  try {
    const r = await fn();
    say(done ? done(r) : `${what}: ${(r && r.result) || 'done'}`, 'ok');
  } catch (e) {
    // 4xx: the console or the cluster said no; 5xx: it could not (etcd)
    const how = !e.status ? '' : `${e.status >= 500 ? 'failed' : 'refused'} (${e.status}): `;
    say(`${what}: ${how}${e.message}`, 'error', e.status);
  } finally {
    state.pending.delete(key);
    if (state.cluster) render(state.cluster);
    refresh();
  }
}

// ---- signing in and out ------------------------------------------------

function signedOut(why) {
  state.user = null;
  state.cluster = null;
  closeEvents();
  document.body.dataset.auth = 'out';
  $('#login').hidden = false;
  $('#app').hidden = true;
  $('#user').hidden = true;
  setLive('closed');
  if (why) say(why, 'error', 401);
  $('#token').focus();
}

function signedIn(who) {
  state.user = who;
  document.body.dataset.auth = 'in';
  document.body.dataset.role = who.role || '';
  $('#login').hidden = true;
  $('#app').hidden = false;
  $('#user').hidden = false;
  setText($('#user-name'), who.name);
  setText($('#user-role'), who.role);
  $('#user-role').title = who.role === 'admin' ? 'may change the cluster'
    : 'read-only: the cluster refuses your changes';
  openEvents();
  refresh();
}

async function login(ev) {
  ev.preventDefault();
  const token = $('#token').value.trim();
  if (!token) return;
  const btn = $('#login-submit');
  btn.disabled = true;
  try {
    const who = await api('POST', '/api/login', { token });
    $('#token').value = '';
    say(`signed in as ${who.name} (${who.role})`, 'ok');
    signedIn(who);
  } catch (e) {
    say(`sign-in failed${e.status ? ` (${e.status})` : ''}: ${e.message}`, 'error', e.status);
  } finally {
    btn.disabled = false;
  }
}

async function logout() {
  try {
    await api('POST', '/api/logout');
  } catch (e) {
    if (e.status !== 401) say(`log out: ${e.message}`, 'error', e.status);
  }
  signedOut();
  say('signed out', 'ok');
}

// ---- live updates ------------------------------------------------------

function setLive(s) {
  const e = $('#live');
  e.dataset.state = s;
  setText(e, { open: 'live', connecting: 'reconnecting…', closed: 'offline' }[s] || s);
}

function closeEvents() {
  clearTimeout(state.retry);
  if (state.events) state.events.close();
  state.events = null;
}

function openEvents() {
  if (state.events || !state.user) return;
  const es = new EventSource('/api/events');
  state.events = es;
  setLive('connecting');
  // a (re)connected stream replays nothing: read everything again
  es.addEventListener('open', () => { setLive('open'); refresh(); });
  es.addEventListener('change', (ev) => {
    try {
      const d = JSON.parse(ev.data);
      if (d && d.rev !== undefined) setText($('#rev'), `rev ${d.rev}`);
    } catch (e) { /* the event alone says enough */ }
    refresh();
  });
  es.addEventListener('error', () => {
    if (es.readyState !== EventSource.CLOSED) { setLive('connecting'); return; }
    // refused (401, a restarted console...): the browser gives up; so do
    // we until whoami says the session still holds
    setLive('closed');
    state.events = null;
    clearTimeout(state.retry);
    state.retry = setTimeout(async () => {
      if (!state.user) return;
      try {
        await api('GET', '/api/whoami');
        openEvents();
      } catch (e) {
        if (e.status !== 401) { state.events = null; state.retry = setTimeout(openEvents, 3000); }
      }
    }, 2000);
  });
}

async function refresh() {
  if (!state.user) return;
  if (state.refreshing) { state.again = true; return; }
  state.refreshing = true;
  try {
    do {
      state.again = false;
      const c = await api('GET', '/api/cluster');
      if (!state.user) return;
      await addDrains(c);
      state.cluster = c;
      render(c);
      if (state.readError) { $('#message').hidden = true; state.readError = false; }
    } while (state.again);
  } catch (e) {
    if (e.status !== 401 && state.user) {
      state.readError = true;
      say(`cannot read the cluster${e.status ? ` (${e.status})` : ''}: ${e.message}`, 'error', e.status);
    }
  } finally {
    state.refreshing = false;
  }
}

// /api/cluster's nodes are `node list`'s; if they come without their drain
// and slots (`node show` has them), read those of the nodes in maintenance.
async function addDrains(c) {
  const nodes = Array.isArray(c.nodes) ? c.nodes : [];
  await Promise.all(nodes.filter((n) => n && n.drain === undefined && inMaintenance(n)).map(async (n) => {
    try {
      const full = await api('GET', `/api/nodes/${encodeURIComponent(n.name)}`);
      n.drain = full ? full.drain : null;
      if (full && full.slots !== undefined && n.slots === undefined) n.slots = full.slots;
    } catch (e) {
      /* shown without its drain */
    }
  }));
}

// ---- the model: what the records say -----------------------------------

const inMaintenance = (n) => !!(n.maintenance || n.state === 'maintenance');
const rec = (n) => (n && typeof n.record === 'object' && n.record) || {};

function migrationsOf(c) {
  const m = c.migrations;
  if (Array.isArray(m)) {   // a flat list: sort it out by state
    return {
      queued: m.filter((x) => x.state === 'queued'),
      running: m.filter((x) => x.state === 'running'),
      finished: m.filter((x) => !['queued', 'running'].includes(x.state)),
    };
  }
  return { queued: (m && m.queued) || [], running: (m && m.running) || [], finished: (m && m.finished) || [] };
}

// the VM's state as `vm list` says it
function vmState(v) {
  const st = (v.status && typeof v.status === 'object') ? v.status : {};
  const owner = v.owner;
  if (!owner) return st.state === 'failed' ? 'failed' : 'stopped';
  if (owner.startsWith('free:')) return 'handing over';
  if (st.node === owner && st.state) return st.state;
  return 'starting';
}

function vmNode(v) {
  if (v.owner && !v.owner.startsWith('free:')) return v.owner;
  return (v.status && v.status.node) || '';
}

// node card state: up, down, bad, maintenance, draining, drained, drain-incomplete
function nodeState(n) {
  if (n.state === 'down') return { key: 'down', text: 'down' };
  if (n.state && n.state !== 'up' && n.state !== 'maintenance')
    return { key: 'bad', text: n.problem ? `${n.state}: ${n.problem}` : n.state };
  if (!inMaintenance(n)) return { key: 'up', text: 'up' };
  const d = n.drain;
  if (!d || typeof d !== 'object' || d.state === 'cancelled') return { key: 'maintenance', text: 'maintenance' };
  const moved = num(d.moved) || 0;
  const left = num(d.remaining);
  const stuck = d.stuck && typeof d.stuck === 'object' ? Object.keys(d.stuck).length : 0;
  if (d.state === 'draining') {
    if (left === null) return { key: 'draining', text: 'maintenance: draining, starting' };
    let t = `maintenance: draining ${moved} of ${moved + left} moved`;
    if (stuck) t += `, ${stuck} cannot move`;
    if (num(d['eta-s']) !== null) t += `, ETA ${Math.round(d['eta-s'])} s`;
    return { key: 'draining', text: t };
  }
  if (d.state === 'drained') return { key: 'drained', text: `maintenance: drained (${moved} moved)` };
  if (d.state === 'drain-incomplete')
    return { key: 'drain-incomplete', text: `maintenance: drain-incomplete (${moved} moved, ${left || stuck} cannot move)` };
  return { key: 'maintenance', text: `maintenance: ${d.state}` };
}

function slotsInUse(n, mig) {
  if (n.slots && typeof n.slots === 'object') return Object.keys(n.slots).length;
  // a running migration holds one slot on its source and one on its destination
  return mig.running.filter((m) => m.from === n.name || m.to === n.name).length;
}

// How far a migration is: the part of the VM's RAM no longer to be sent.
function progressOf(m) {
  const p = (m && m.progress) || {};
  const tot = num(p.total);
  const rem = num(p.remaining);
  const tr = num(p.transferred) || 0;
  let pct = 0;
  if (tot && tot > 0 && (tr > 0 || (p.round || 0) > 0) && rem !== null)
    pct = Math.max(0, Math.min(100, 100 * (tot - rem) / tot));
  return { p, pct, tot, rem, tr };
}

// ---- progress samples, throughput, ETA ---------------------------------

// One sample per progress update the page sees (the agent rewrites it
// every second); the time base is the VMM's own total-time-ms when given.
function addSample(m) {
  const p = m.progress;
  if (!p || typeof p !== 'object') return;
  let s = state.samples.get(m.id);
  if (!s) { s = []; state.samples.set(m.id, s); }
  const x = {
    ms: num(p['total-time-ms']),
    tr: num(p.transferred) || 0,
    rem: num(p.remaining),
    tot: num(p.total),
    round: num(p.round) || 0,
    dirty: num(p['dirty-rate']),
    at: performance.now(),
  };
  const last = s[s.length - 1];
  if (last && last.tr === x.tr && last.ms === x.ms && last.round === x.round) return;
  s.push(x);
  if (s.length > MAX_SAMPLES) s.splice(0, s.length - MAX_SAMPLES);
}

// throughput between successive samples: [{t (s since the first), bps, round}]
function rates(s) {
  const out = [];
  for (let i = 1; i < s.length; i++) {
    const a = s[i - 1];
    const b = s[i];
    const useMs = a.ms !== null && b.ms !== null && b.ms > a.ms;
    const dt = useMs ? (b.ms - a.ms) / 1000 : (b.at - a.at) / 1000;
    if (dt <= 0) continue;
    const t = useMs && s[0].ms !== null ? (b.ms - s[0].ms) / 1000 : (b.at - s[0].at) / 1000;
    out.push({ t, bps: Math.max(0, (b.tr - a.tr) / dt), round: b.round, dirty: b.dirty });
  }
  return out;
}

function recentRate(s) {
  const r = rates(s).slice(-3);
  if (!r.length) return null;
  return r.reduce((a, x) => a + x.bps, 0) / r.length;
}

// ETA: what is left to send at the recent throughput
function etaSeconds(m) {
  const s = state.samples.get(m.id) || [];
  const rate = recentRate(s);
  const last = s[s.length - 1];
  if (!rate || !last || last.rem === null) return null;
  return last.rem / rate;
}

// A small chart of the throughput per update, the guest's dirty rate as a
// second line where the agent reports it, a dashed line where a new round
// (a pass over the dirty pages) began.
function chart(id) {
  const s = state.samples.get(id) || [];
  const r = rates(s);
  const W = 180;
  const H = 44;
  const P = 2;
  const g = svg('svg', {
    viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: 'chart',
    'data-points': r.length, role: 'img',
  });
  const title = svg('title');
  const hasDirty = r.some((x) => x.dirty !== null && x.dirty !== undefined);
  const peak = r.reduce((a, x) => Math.max(a, x.bps, hasDirty ? (x.dirty || 0) : 0), 0);
  title.textContent = r.length
    ? `throughput per update: ${r.map((x) => (x.bps / MIB).toFixed(1)).join(', ')} MiB/s` +
      (hasDirty ? `; dirty rate: ${r.map((x) => ((x.dirty || 0) / MIB).toFixed(1)).join(', ')} MiB/s` : '')
    : 'throughput: waiting for two updates';
  g.append(title);
  g.append(svg('rect', { x: 0, y: 0, width: W, height: H, class: 'chart-bg' }));
  if (r.length < 1 || peak <= 0) {
    const t = svg('text', { x: W / 2, y: H / 2 + 4, 'text-anchor': 'middle', class: 'chart-label' });
    t.textContent = r.length ? 'no data sent yet' : 'waiting for updates';
    g.append(t);
    return g;
  }
  const tmin = r[0].t;
  const span = Math.max(r[r.length - 1].t - tmin, 1e-3);
  const X = (t) => P + (W - 2 * P) * (r.length === 1 ? 1 : (t - tmin) / span);
  const Y = (b) => H - P - (H - 2 * P - 10) * (b / peak);
  let prevRound = r[0].round;
  for (const x of r) {
    if (x.round !== prevRound) {
      g.append(svg('line', { x1: X(x.t), x2: X(x.t), y1: 10, y2: H - P, class: 'chart-round' }));
      prevRound = x.round;
    }
  }
  const pts = r.length === 1 ? [[P, Y(r[0].bps)], [X(r[0].t), Y(r[0].bps)]] : r.map((x) => [X(x.t), Y(x.bps)]);
  const area = `${pts[0][0]},${H - P} ${pts.map((p) => p.join(',')).join(' ')} ${pts[pts.length - 1][0]},${H - P}`;
  g.append(svg('polygon', { points: area, class: 'chart-area' }));
  g.append(svg('polyline', { points: pts.map((p) => p.join(',')).join(' '), class: 'chart-line' }));
  if (hasDirty) {
    const dp = r.length === 1 ? [[P, Y(r[0].dirty || 0)], [X(r[0].t), Y(r[0].dirty || 0)]]
      : r.map((x) => [X(x.t), Y(x.dirty || 0)]);
    g.append(svg('polyline', { points: dp.map((p) => p.join(',')).join(' '), class: 'chart-dirty' }));
  }
  const lab = svg('text', { x: W - P - 1, y: 9, 'text-anchor': 'end', class: 'chart-label' });
  lab.textContent = `peak ${fmtRate(peak)}`;
  g.append(lab);
  return g;
}

// min: how many samples make a chart worth showing (a finished migration
// seen once has nothing to draw)
function setChart(cell, id, min = 1) {
  const s = state.samples.get(id);
  const n = s ? s.length : 0;
  if (cell.dataset.samples === String(n)) return;
  cell.dataset.samples = String(n);
  cell.replaceChildren(n >= min ? chart(id) : '');
}

// ---- rendering ---------------------------------------------------------

function bar(cls, frac, label, title) {
  const f = Math.max(0, Math.min(1, frac || 0));
  const fill = el('div', { class: 'fill' });
  fill.style.width = (100 * f).toFixed(1) + '%';
  return el('div', { class: `bar ${cls}${f > 0.9 ? ' hot' : ''}`, title: title || label, 'data-frac': f.toFixed(3) },
    fill, el('span', { class: 'bar-label', text: label }));
}

function button(label, action, dataset, disabled, title) {
  const b = el('button', { type: 'button', class: `act act-${action}`, 'data-action': action, title }, label);
  for (const [k, v] of Object.entries(dataset)) b.dataset[k] = v;
  b.disabled = !!disabled;
  return b;
}

function renderNodes(c, mig) {
  const nodes = (Array.isArray(c.nodes) ? c.nodes : []).filter((n) => n && n.name)
    .slice().sort((a, b) => a.name.localeCompare(b.name));
  const vms = Array.isArray(c.vms) ? c.vms : [];
  syncKeyed($('#nodes'), nodes, (n) => n.name, (n) => el('article', { class: 'card', 'data-node': n.name }), (card, n) => {
    const r = rec(n);
    const st = nodeState(n);
    card.dataset.state = st.key;
    const cpus = num(r.cpus);
    const load = Array.isArray(r.load) ? num(r.load[0]) : null;
    const ramT = num(r['ram-total']);
    const ramU = num(r['ram-used']);
    // the VMs whose owner it is (as in the VM table; the node record's own
    // list follows a little later)
    const onIt = vms.filter((v) => v.owner && vmNode(v) === n.name).map((v) => v.name).sort();
    const limit = num(n['migration-limit']);
    const used = slotsInUse(n, mig);
    const maint = inMaintenance(n);
    const key = `maintenance:${n.name}`;
    const d = n.drain && typeof n.drain === 'object' ? n.drain : null;
    // rebuilt only when something it shows changed (a click is not lost
    // to a re-read that changed nothing here)
    const sig = JSON.stringify([n, onIt, used, state.pending.has(key)]);
    if (card._sig === sig) return;
    card._sig = sig;
    let drainLine = null;
    if (maint && d && d.state === 'draining' && d['in-flight'] && typeof d['in-flight'] === 'object') {
      const f = d['in-flight'];
      const pr = progressOf(f);
      drainLine = el('div', { class: 'drain-flight' }, `moving ${f.vm} → ${f.to || '?'}`,
        pr.tot ? ` ${Math.round(pr.pct)}%` : '');
    }
    let stuck = null;
    if (maint && d && d.stuck && typeof d.stuck === 'object' && Object.keys(d.stuck).length) {
      stuck = el('ul', { class: 'stuck' }, Object.entries(d.stuck).map(([vm, why]) =>
        el('li', { 'data-vm': vm }, el('b', {}, vm), ` stays: ${why}`)));
    }
    card.replaceChildren(...[
      el('header', {},
        el('h3', { text: n.name }),
        el('span', { class: `state state-${st.key}`, 'data-role': 'state', text: st.text })),
      r['mgmt-addr'] ? el('div', { class: 'addr', text: r['mgmt-addr'] }) : null,
      drainLine,
      stuck,
      n.state === 'down' ? el('p', { class: 'muted', text: 'its agent does not renew its lease' }) : el('div', { class: 'bars' },
        bar('cpu', cpus && load !== null ? load / cpus : 0,
          `CPU load ${load === null ? '-' : load.toFixed(2)} / ${cpus === null ? '-' : cpus} CPUs`),
        bar('ram', ramT ? (ramU || 0) / ramT : 0, `RAM ${fmtBytes(ramU)} / ${fmtBytes(ramT)}`,
          `RAM given to VMs: ${fmtBytes(ramU)} of ${fmtBytes(ramT)}`),
        bar('vcpu', cpus ? (num(r['cpus-used']) || 0) / cpus : 0,
          `vCPUs ${num(r['cpus-used']) === null ? '-' : r['cpus-used']} / ${cpus === null ? '-' : cpus}`)),
      el('div', { class: 'vms-on', 'data-role': 'vms' }, el('span', { class: 'muted', text: 'VMs: ' }),
        onIt.length ? onIt.map((v, i) => [i ? ', ' : '', el('span', { class: 'vm-chip', 'data-vm': v, text: v })]) : 'none'),
      el('div', { class: 'slots', 'data-role': 'slots', 'data-used': used, 'data-limit': limit === null ? '' : limit },
        `migration slots: ${used} of ${limit === null ? '?' : limit} in use`),
      el('footer', {}, button(maint ? 'Maintenance off' : 'Maintenance on', 'maintenance',
        { node: n.name, on: maint ? 'false' : 'true' }, state.pending.has(key),
        maint ? 'take the node out of maintenance (cancels a drain under way)'
          : 'put the node in maintenance and move its VMs away')),
    ].filter(Boolean));
  });
}

function renderVms(c, mig) {
  const vms = (Array.isArray(c.vms) ? c.vms : []).filter((v) => v && v.name)
    .slice().sort((a, b) => a.name.localeCompare(b.name));
  const nodes = (Array.isArray(c.nodes) ? c.nodes : []).filter((n) => n && n.name);
  const targets = nodes.filter((n) => n.state === 'up' && !inMaintenance(n)).map((n) => n.name).sort();
  const inflight = new Map();
  for (const m of [...mig.queued, ...mig.running]) inflight.set(m.vm, m);

  syncKeyed($('#vms tbody'), vms, (v) => v.name, (v) => {
    const tr = el('tr', { 'data-vm': v.name });
    const sel = el('select', { 'data-role': 'migrate-to', title: 'where to migrate it' });
    sel.setAttribute('aria-label', `destination for ${v.name}`);
    tr.append(el('td', { class: 'name', text: v.name }), el('td', { 'data-role': 'state' }),
      el('td', { 'data-role': 'node' }), el('td', { 'data-role': 'mem', class: 'num' }),
      el('td', { 'data-role': 'cpus', class: 'num' }), el('td', { 'data-role': 'cpu' }),
      el('td', { class: 'actions' },
        button('Start', 'start', { vm: v.name }), button('Stop', 'stop', { vm: v.name }),
        sel, button('Migrate', 'migrate', { vm: v.name }, false, 'live migration'),
        button('Quick', 'quick', { vm: v.name }, false, 'quick migration: pause, save, restore')));
    return tr;
  }, (tr, v) => {
    const spec = (v.spec && typeof v.spec === 'object') ? v.spec : {};
    const st = vmState(v);
    const node = vmNode(v);
    const m = inflight.get(v.name);
    tr.dataset.state = st;
    tr.dataset.node = node;
    if (m) tr.dataset.migrating = m.id; else delete tr.dataset.migrating;
    const stCell = $('[data-role=state]', tr);
    const why = v.status && v.status.reason ? String(v.status.reason) : '';
    setText(stCell, m ? `${st}, migrating${m.to ? ` → ${m.to}` : ''}` : st);
    stCell.className = `vmstate vmstate-${st.replace(/\s+/g, '-')}`;
    stCell.title = why;
    setText($('[data-role=node]', tr), node || '-');
    setText($('[data-role=mem]', tr), fmtBytes(num(spec.mem)));
    setText($('[data-role=cpus]', tr), num(spec.cpus) === null ? '-' : spec.cpus);
    setText($('[data-role=cpu]', tr), spec.cpu || 'host');

    // the destinations: "best" and every node that takes VMs but its own
    const sel = $('select', tr);
    const opts = ['best', ...targets.filter((t) => t !== node)];
    const have = Array.from(sel.options).map((o) => o.value);
    if (have.join('\n') !== opts.join('\n')) {
      const keep = sel.value;
      sel.replaceChildren(...opts.map((o) => el('option', { value: o, text: o === 'best' ? 'best (placement)' : o })));
      sel.value = opts.includes(keep) ? keep : 'best';
    }
    const running = st === 'running';
    const busy = (a) => state.pending.has(`${a}:${v.name}`);
    $('[data-action=start]', tr).disabled = !(st === 'stopped' || st === 'failed') || busy('start');
    $('[data-action=stop]', tr).disabled = !(running || st === 'starting' || st === 'failed') || busy('stop');
    $('[data-action=migrate]', tr).disabled = !running || !!m || busy('migrate');
    $('[data-action=quick]', tr).disabled = !running || !!m || busy('migrate');
    sel.disabled = !running || !!m;
  });
}

function renderMigrations(c, mig) {
  const rows = [...mig.running, ...mig.queued].filter((m) => m && m.id);
  $('#migrations-empty').hidden = rows.length > 0;
  syncKeyed($('#migrations tbody'), rows, (m) => m.id, (m) => {
    const tr = el('tr', { 'data-migration': m.id, 'data-vm': m.vm });
    const fill = el('div', { class: 'fill' });
    tr.append(el('td', { class: 'name', text: m.vm }), el('td', { 'data-role': 'move' }),
      el('td', { 'data-role': 'state' }),
      el('td', { 'data-role': 'progress' },
        el('div', { class: 'bar progress' }, fill, el('span', { class: 'bar-label' }))),
      el('td', { 'data-role': 'round', class: 'num' }), el('td', { 'data-role': 'downtime', class: 'num' }),
      el('td', { 'data-role': 'eta', class: 'num' }), el('td', { 'data-role': 'chart' }),
      el('td', {}, button('Cancel', 'cancel', { migration: m.id, vm: m.vm })));
    return tr;
  }, (tr, m) => {
    const pr = progressOf(m);
    tr.dataset.state = m.state;
    tr.dataset.progress = pr.pct.toFixed(1);
    tr.dataset.transferred = String(pr.tr);
    const to = m.to || m['requested-to'] || 'best';
    setText($('[data-role=move]', tr), `${m.from || '?'} → ${to}${m.quick ? ' (quick)' : ''}`);
    const st = $('[data-role=state]', tr);
    setText(st, m.state === 'queued' && m.reason ? m.reason : m.state);
    st.title = m.network ? `over ${m.network}` : '';
    const fill = $('.fill', tr);
    fill.style.width = pr.pct.toFixed(1) + '%';
    setText($('.bar-label', tr), m.state === 'running' && pr.tot
      ? `${Math.round(pr.pct)}%  ${(pr.tr / MIB).toFixed(1)} / ${(pr.tot / MIB).toFixed(1)} MiB sent`
      : m.state);
    setText($('[data-role=round]', tr), m.progress ? (m.progress.round || 0) : '-');
    const ed = m.progress ? num(m.progress['expected-downtime-ms']) : null;
    setText($('[data-role=downtime]', tr), ed === null ? '-' : fmtMs(ed));
    const eta = m.state === 'running' ? etaSeconds(m) : null;
    setText($('[data-role=eta]', tr), eta === null ? '-' : `~${eta < 10 ? eta.toFixed(1) : Math.round(eta)} s`);
    const rate = recentRate(state.samples.get(m.id) || []);
    const chartCell = $('[data-role=chart]', tr);
    chartCell.title = rate === null ? '' : `now ${fmtRate(rate)}`;
    setChart(chartCell, m.id);
    $('[data-action=cancel]', tr).disabled = state.pending.has(`cancel:${m.id}`);
  });
}

function renderHistory(c, mig) {
  const when = (m) => num(m.finished) || num(m.requested) || 0;
  const all = mig.finished.filter((m) => m && m.id);
  // one VM's history, or everyone's: the VMs to choose from are those listed
  const pick = $('#history-vm');
  const vmNames = new Set(all.map((m) => m.vm));
  for (const v of Array.isArray(c.vms) ? c.vms : []) if (v) vmNames.add(v.name);
  const names = ['', ...Array.from(vmNames).filter(Boolean).sort()];
  if (Array.from(pick.options).map((o) => o.value).join('\n') !== names.join('\n')) {
    const keep = pick.value;
    pick.replaceChildren(...names.map((n) => el('option', { value: n, text: n || 'all VMs' })));
    pick.value = names.includes(keep) ? keep : '';
  }
  const only = pick.value;
  const rows = all.filter((m) => !only || m.vm === only).sort((a, b) => when(b) - when(a));
  $('#history-empty').hidden = rows.length > 0;
  setText($('#history-empty'), only ? `No finished migration of ${only} listed.` : 'No finished migration yet.');
  syncKeyed($('#history tbody'), rows, (m) => m.id, (m) => el('tr', { 'data-migration': m.id, 'data-vm': m.vm }), (tr, m) => {
    const s = (m.stats && typeof m.stats === 'object') ? m.stats : {};
    const total = num(s['total-time-ms']) !== null ? s['total-time-ms']
      : (num(m.finished) && num(m.started) ? (m.finished - m.started) * 1000 : null);
    const down = num(s['downtime-ms']);
    const key = `${m.state}|${total}|${down}|${m.reason || ''}|${(state.samples.get(m.id) || []).length}`;
    if (tr._sig === key) return;
    tr._sig = key;
    tr.dataset.result = m.state;
    const chartCell = el('td', { 'data-role': 'chart' });
    setChart(chartCell, m.id, 2);
    tr.replaceChildren(
      el('td', { 'data-role': 'when', text: fmtTime(when(m), true) }),
      el('td', { class: 'name', text: m.vm }),
      el('td', { 'data-role': 'move', text: `${m.from || '?'} → ${m.to || m['requested-to'] || '-'}` }),
      el('td', { text: m.quick ? 'quick' : 'live' }),
      el('td', { 'data-role': 'total', class: 'num', text: fmtMs(total) }),
      el('td', { 'data-role': 'downtime', class: 'num downtime', 'data-ms': down === null ? '' : down, text: down === null ? '-' : fmtMs(down) }),
      el('td', { class: 'num', text: num(s.transferred) === null ? '-' : fmtBytes(s.transferred) }),
      el('td', { 'data-role': 'result', class: `result result-${m.state}`, text: m.state }),
      el('td', { 'data-role': 'reason', class: 'reason', text: m.reason || (m.drain ? 'drain' : '') || (m.tip ? `tip ${m.tip}` : '') }),
      chartCell);
  });
}

function renderTips(c) {
  const tips = (Array.isArray(c.tips) ? c.tips : []).filter((t) => t && t.id && (t.state || 'open') === 'open');
  $('#tips-empty').hidden = tips.length > 0;
  const pair = (o, t) => (o && typeof o === 'object'
    ? `${t.from} ${num(o.from) === null ? '-' : o.from.toFixed(0)} %, ${t.to} ${num(o.to) === null ? '-' : o.to.toFixed(0)} %` : '-');
  syncKeyed($('#tips tbody'), tips, (t) => t.id, (t) => el('tr', { 'data-tip': t.id, 'data-vm': t.vm }), (tr, t) => {
    tr.replaceChildren(
      el('td', { text: `${t.vm}: ${t.from} → ${t.to}` }),
      el('td', { class: 'reason', text: t.reason || '' }),
      el('td', { text: pair(t.before, t) }),
      el('td', { text: pair(t.after, t) }),
      el('td', { text: fmtTime(num(t.created)) }),
      el('td', {}, button('Apply', 'apply', { tip: t.id }, state.pending.has(`apply:${t.id}`))));
  });
}

function renderEvents(c) {
  const list = (Array.isArray(c.audit) ? c.audit : []).filter((a) => a && typeof a === 'object')
    .slice().sort((a, b) => (num(b.t) || 0) - (num(a.t) || 0)).slice(0, EVENTS_SHOWN);
  $('#events-empty').hidden = list.length > 0;
  syncKeyed($('#events'), list, (a) => `${a.t}|${a.who}|${a.action}|${a.target}|${a.status}`, (a) => {
    const okish = num(a.status) !== null && a.status < 400;
    const args = a.args && typeof a.args === 'object' && Object.keys(a.args).length ? ` ${JSON.stringify(a.args)}` : '';
    return el('li', { class: okish ? 'ok' : 'refused', 'data-action': a.action, 'data-who': a.who, 'data-status': a.status },
      el('time', { text: fmtTime(num(a.t), true) }), ' ',
      el('b', { text: a.who || '?' }), a.role ? el('span', { class: 'role', text: a.role }) : '', ' ',
      el('span', { class: 'what', text: `${a.action || '?'} ${a.target || ''}${args}` }), ' ',
      el('span', { class: 'status', text: a.status === undefined ? '' : String(a.status) }), ' ',
      el('span', { class: 'result', text: a.result === undefined ? '' : (typeof a.result === 'string' ? a.result : JSON.stringify(a.result)) }));
  }, () => {});
}

function render(c) {
  const mig = migrationsOf(c);
  for (const m of mig.running) addSample(m);
  // forget the samples of migrations no longer listed anywhere
  const known = new Set([...mig.queued, ...mig.running, ...mig.finished].map((m) => m.id));
  for (const id of state.samples.keys()) if (!known.has(id)) state.samples.delete(id);
  if (c.rev !== undefined) setText($('#rev'), `rev ${c.rev}`);
  renderNodes(c, mig);
  renderVms(c, mig);
  renderMigrations(c, mig);
  renderHistory(c, mig);
  renderTips(c);
  renderEvents(c);
  document.body.dataset.rev = c.rev === undefined ? '' : String(c.rev);
}

// ---- actions (one click handler for every button) ----------------------

const enc = encodeURIComponent;

function onClick(ev) {
  const b = ev.target.closest('button[data-action]');
  if (!b || b.disabled) return;
  const d = b.dataset;
  switch (d.action) {
    case 'start':
      act(`start:${d.vm}`, `start ${d.vm}`, () => api('POST', `/api/vms/${enc(d.vm)}/start`));
      break;
    case 'stop':
      act(`stop:${d.vm}`, `stop ${d.vm}`, () => api('POST', `/api/vms/${enc(d.vm)}/stop`));
      break;
    case 'migrate':
    case 'quick': {
      const tr = b.closest('tr');
      const to = (tr && $('select', tr) && $('select', tr).value) || 'best';
      const body = { to };
      if (d.action === 'quick') body.quick = true;
      const what = `${d.action === 'quick' ? 'quick-migrate' : 'migrate'} ${d.vm} to ${to}`;
      act(`migrate:${d.vm}`, what, () => api('POST', `/api/vms/${enc(d.vm)}/migrate`, body),
        (r) => `${what}: queued${r && r.id ? ` as ${r.id}` : ''}`);
      break;
    }
    case 'cancel':
      act(`cancel:${d.migration}`, `cancel the migration of ${d.vm}`,
        () => api('POST', `/api/migrations/${enc(d.migration)}/cancel`));
      break;
    case 'maintenance': {
      const on = d.on === 'true';
      act(`maintenance:${d.node}`, `maintenance ${on ? 'on' : 'off'} for ${d.node}`,
        () => api('POST', `/api/nodes/${enc(d.node)}/maintenance`, { on }));
      break;
    }
    case 'apply':
      act(`apply:${d.tip}`, `apply tip ${d.tip}`, () => api('POST', `/api/tips/${enc(d.tip)}/apply`));
      break;
    default:
      break;
  }
}

async function boot() {
  $('#login-form').addEventListener('submit', login);
  $('#logout').addEventListener('click', logout);
  $('#message').addEventListener('click', () => { $('#message').hidden = true; });
  $('#history-vm').addEventListener('change', () => { if (state.cluster) render(state.cluster); });
  document.addEventListener('click', onClick);
  for (;;) {
    try {
      signedIn(await api('GET', '/api/whoami'));
      return;
    } catch (e) {
      if (e.status === 401) { signedOut(); return; }
      say(`the console does not answer: ${e.message}; trying again`, 'error', e.status);
      await new Promise((r) => setTimeout(r, 3000));
    }
  }
}

document.addEventListener('DOMContentLoaded', boot);
