// Tether dashboard: health, counts, expiry lateness, live event feed, session
// lookup/end, cleanup preview + execute, webhooks (webhooks.js). Plain JS; talks to the /v1 API with
// an API key kept in sessionStorage.
import { EVENT_TYPES } from '/sdk/tether.js';
import { parsePrometheus, histogramSummary, fmtSeconds } from '/admin/metrics.js';
import { refreshWebhooks } from '/admin/webhooks.js';
import { renderNodes } from '/admin/nodes.js';

const KEY_STORE = 'tether-admin-key';
const LIVE = ['waiting', 'active', 'completing'];
const STATUS_ORDER = ['waiting', 'active', 'completing', 'ended', 'live'];
const $ = (id) => document.getElementById(id);

const state = {
  key: sessionStorage.getItem(KEY_STORE),
  es: null,
  paused: false,
  events: [],
  refreshTimer: null,
  pollTimer: null,
  found: null,
  preview: null,
  health: null,
  lateness: null,
  kinds: null,
  lastEventId: null,
};
window.__admin = state;

// ---------- HTTP ----------
class HttpError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.key}`, Accept: 'application/json' };
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (res.status === 401) {
    signOut('The API key was rejected (401).');
    throw new HttpError(401, data);
  }
  if (!res.ok) throw new HttpError(res.status, data);
  return data;
}

// ---------- sign in / out ----------
$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const key = $('api-key').value.trim();
  if (!key) {
    $('login-error').textContent = 'Enter an API key.';
    $('api-key').focus();
    return;
  }
  state.key = key;
  $('login-error').textContent = '';
  try {
    await api('GET', '/v1/admin/health');
  } catch (err) {
    if (err.status !== 401) $('login-error').textContent = `Could not connect: ${err.message}`;
    state.key = null;
    return;
  }
  sessionStorage.setItem(KEY_STORE, key);
  $('api-key').value = '';
  start();
});

$('signout-btn').addEventListener('click', () => signOut());

function signOut(message) {
  sessionStorage.removeItem(KEY_STORE);
  state.key = null;
  if (state.es) state.es.close();
  state.es = null;
  clearInterval(state.pollTimer);
  $('dash').hidden = true;
  $('login').hidden = false;
  $('signout-btn').hidden = true;
  setFeed('', 'Signed out');
  $('login-error').textContent = message || '';
  $('api-key').focus();
}

function start() {
  $('login').hidden = true;
  $('dash').hidden = false;
  $('signout-btn').hidden = false;
  refresh();
  clearInterval(state.pollTimer);
  state.pollTimer = setInterval(refresh, 3000);
  openFeed();
}

// ---------- overview ----------
function scheduleRefresh() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => {
    state.refreshTimer = null;
    refresh();
  }, 400);
}

async function refresh() {
  if (!state.key) return;
  if (!state.kinds) {
    api('GET', '/v1/kinds')
      .then((r) => (state.kinds = ((r && r.kinds) || []).map((k) => k.name)))
      .catch(() => {});
  }
  const [health, metrics, ...lists] = await Promise.allSettled([
    api('GET', '/v1/admin/health'),
    fetch('/metrics', { headers: { Authorization: `Bearer ${state.key}` } }).then((r) => (r.ok ? r.text() : '')),
    ...LIVE.map((s) => api('GET', `/v1/sessions?status=${s}&limit=50`)),
  ]);
  const h = health.status === 'fulfilled' ? health.value : null;
  const samples = metrics.status === 'fulfilled' && metrics.value ? parsePrometheus(metrics.value) : [];
  const live = lists.flatMap((r) => (r.status === 'fulfilled' && r.value ? r.value.sessions || [] : []));
  state.health = h;
  renderTiles(h, samples);
  renderMatching(samples);
  renderCounts(h, samples, live);
  renderLive(live);
  renderNodes(h);
  refreshWebhooks(api);
  $('updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

function renderTiles(h, samples) {
  const sessions = (h && h.sessions) || {};
  const by = sessions.by_status || {};
  const healthEl = $('t-health');
  healthEl.textContent = h ? h.health : '—';
  healthEl.className = 'tile-value ' + (h ? `health-${h.health}` : '');
  const liveCount = LIVE.reduce((n, s) => n + (Number(by[s]) || 0), 0);
  $('t-live').textContent = h ? String(liveCount) : '—';
  const overdue = sessions.overdue;
  $('t-overdue').textContent = overdue == null ? '—' : String(overdue);
  $('tile-overdue').classList.toggle('bad', Number(overdue) > 0);
  const lat = histogramSummary(samples, 'tether_expiry_lateness_seconds');
  state.lateness = lat;
  if (!lat) {
    $('t-lateness').textContent = '—';
    $('t-lateness-sub').textContent = 'no tether_expiry_lateness_seconds yet';
  } else if (!lat.count) {
    $('t-lateness').textContent = '—';
    $('t-lateness-sub').textContent = 'no expiry yet';
  } else {
    $('t-lateness').textContent = fmtSeconds(lat.p99);
    $('t-lateness-sub').textContent =
      `p99 of ${lat.count} expiries · mean ${fmtSeconds(lat.mean)} · all ≤ ${fmtSeconds(lat.maxBucket)}`;
  }
}

function metricSum(samples, name) {
  let found = false;
  let n = 0;
  for (const s of samples) {
    if (s.name === name) {
      found = true;
      n += s.value;
    }
  }
  return found ? n : null;
}

function renderMatching(samples) {
  const pool = metricSum(samples, 'tether_matching_pool_users');
  $('t-pool').textContent = pool == null ? '—' : String(pool);
  const pairs = metricSum(samples, 'tether_matching_pairs_total');
  $('t-pairs').textContent = pairs == null ? '—' : String(pairs);
  const ttp = histogramSummary(samples, 'tether_matching_time_to_pair_seconds');
  $('t-pairs-sub').textContent = ttp && ttp.count ? `time to pair p50 ${fmtSeconds(ttp.p50)}` : 'time to pair';
  const rtc = histogramSummary(samples, 'tether_webrtc_setup_seconds');
  $('t-webrtc').textContent = rtc && rtc.count ? fmtSeconds(rtc.p50) : '—';
  $('t-webrtc-sub').textContent = rtc && rtc.count ? `p50 of ${rtc.count} calls · p99 ${fmtSeconds(rtc.p99)}` : 'reported by the SDK (p50)';
  const hb = metricSum(samples, 'tether_heartbeats_total');
  $('t-hb').textContent = hb == null ? '—' : String(hb);
}

function sortStatuses(set) {
  return [...set].sort((a, b) => {
    const ia = STATUS_ORDER.indexOf(a);
    const ib = STATUS_ORDER.indexOf(b);
    return (ia === -1 ? 99 : ia) - (ib === -1 ? 99 : ib) || a.localeCompare(b);
  });
}

/** Build a kind × status matrix from whatever the server offers. */
function countsMatrix(h, samples, live) {
  const byKind = (h && h.sessions && h.sessions.by_kind) || {};
  const nested = Object.values(byKind).some((v) => v && typeof v === 'object');
  /** @type {Map<string, Map<string, number>>} */
  const m = new Map();
  const add = (k, s, n) => {
    if (!m.has(k)) m.set(k, new Map());
    m.get(k).set(s, (m.get(k).get(s) ?? 0) + n);
  };
  if (nested) {
    for (const [k, v] of Object.entries(byKind)) for (const [s, n] of Object.entries(v || {})) add(k, s, Number(n) || 0);
    return { m, source: 'health' };
  }
  const gauge = samples.filter(
    (x) => /^tether_sessions/.test(x.name) && !/_(total|bucket|sum|count)$/.test(x.name) && x.labels.kind && x.labels.status,
  );
  if (gauge.length) {
    for (const g of gauge) add(g.labels.kind, g.labels.status, g.value);
    return { m, source: 'metrics' };
  }
  for (const k of Object.keys(byKind)) if (!m.has(k)) m.set(k, new Map());
  for (const s of live) add(s.kind, s.status, 1);
  // health's flat by_kind counts live sessions of each kind
  for (const [k, n] of Object.entries(byKind)) m.get(k).set('live', Number(n) || 0);
  return { m, source: 'lists' };
}

function renderCounts(h, samples, live) {
  const { m } = countsMatrix(h, samples, live);
  // every configured kind gets a row, even with nothing live
  for (const k of state.kinds || []) if (!m.has(k)) m.set(k, new Map());
  const statuses = new Set(LIVE);
  for (const row of m.values()) for (const s of row.keys()) statuses.add(s);
  const cols = sortStatuses(statuses);
  const table = $('counts-table');
  const thead = table.tHead;
  const tr = document.createElement('tr');
  tr.append(th('Kind'), ...cols.map((c) => th(c === 'live' ? 'live (total)' : c, 'num')));
  thead.replaceChildren(tr);
  const body = table.tBodies[0];
  const kinds = [...m.keys()].sort();
  if (!kinds.length) {
    const r = document.createElement('tr');
    const td = document.createElement('td');
    td.colSpan = cols.length + 1;
    td.className = 'muted';
    td.textContent = 'No sessions yet.';
    r.append(td);
    body.replaceChildren(r);
  } else {
    body.replaceChildren(
      ...kinds.map((k) => {
        const r = document.createElement('tr');
        const name = document.createElement('th');
        name.scope = 'row';
        name.textContent = k;
        r.append(name);
        for (const c of cols) {
          const n = m.get(k).get(c) ?? 0;
          const td = document.createElement('td');
          td.className = 'num' + (n ? '' : ' zero');
          td.textContent = String(n);
          td.dataset.kind = k;
          td.dataset.status = c;
          r.append(td);
        }
        return r;
      }),
    );
  }
  const probs = $('problems');
  const items = [];
  for (const p of (h && h.problems) || []) items.push(li(typeof p === 'string' ? p : JSON.stringify(p), 'problem'));
  for (const p of (h && h.recommendations) || []) items.push(li(typeof p === 'string' ? p : JSON.stringify(p), 'rec'));
  probs.replaceChildren(...items);
}

function renderLive(list) {
  const body = $('live-table').tBodies[0];
  const rows = list
    .slice()
    .sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)))
    .slice(0, 50)
    .map((s) => {
      const r = document.createElement('tr');
      r.append(td(s.kind), td(s.user_id), td(s.status), td(s.expires_at ? rel(s.expires_at) : '—'));
      const act = document.createElement('td');
      const view = document.createElement('button');
      view.type = 'button';
      view.className = 'small';
      view.textContent = 'Details';
      view.setAttribute('aria-label', `Details of ${s.kind} session ${s.id}`);
      view.addEventListener('click', () => findSession(s.id));
      act.append(view);
      r.append(act);
      return r;
    });
  body.replaceChildren(...rows);
  $('live-empty').hidden = rows.length > 0;
}

// ---------- live feed ----------
function setFeed(cls, text) {
  $('feed-dot').className = 'dot ' + cls;
  $('feed-state').textContent = text;
}

function openFeed() {
  if (state.es) state.es.close();
  // live from the first open (resuming from 0 would replay this run's whole
  // event log: a million events on a server that started a million
  // sessions); reopened after the last event seen (?last_event_id= is the
  // query form of Last-Event-ID). The EventSource resumes by itself otherwise.
  const since = state.lastEventId != null ? `&last_event_id=${state.lastEventId}` : '';
  const es = new EventSource(`/v1/events?token=${encodeURIComponent(state.key)}${since}`);
  state.es = es;
  setFeed('connecting', 'Connecting to live events…');
  const onEvent = (m) => {
    let ev;
    try {
      ev = JSON.parse(m.data);
    } catch {
      return;
    }
    if (!ev.type && m.type !== 'message') ev.type = m.type;
    if (ev.id == null) ev.id = m.lastEventId;
    onFeedEvent(ev);
  };
  es.onmessage = onEvent;
  for (const t of EVENT_TYPES) es.addEventListener(t, onEvent);
  es.onopen = () => setFeed('open', 'Live events: connected');
  es.onerror = () => {
    if (state.es !== es) return;
    if (es.readyState === EventSource.CLOSED) {
      setFeed('', 'Live events: closed — retrying');
      setTimeout(() => state.key && state.es === es && openFeed(), 3000);
    } else setFeed('connecting', 'Live events: reconnecting…');
  };
}

function onFeedEvent(ev) {
  if (/^\d+$/.test(String(ev.id))) {
    const n = Number(ev.id);
    if (state.lastEventId != null && n <= state.lastEventId) return; // already shown
    state.lastEventId = n;
  }
  state.events.unshift(ev);
  if (state.events.length > 300) state.events.length = 300;
  scheduleRefresh();
  if (!state.paused) renderFeed();
}

function renderFeed() {
  const f = $('feed-filter').value.trim().toLowerCase();
  const list = state.events.filter((ev) => !f || feedText(ev).toLowerCase().includes(f)).slice(0, 150);
  $('feed').replaceChildren(...list.map(feedItem));
}

function feedText(ev) {
  const s = ev.session || {};
  return [ev.type, s.kind, s.user_id, s.id, ev.reason, s.end_reason].filter(Boolean).join(' ');
}

function feedItem(ev) {
  const item = document.createElement('li');
  const t = document.createElement('time');
  t.dateTime = ev.at || '';
  t.textContent = ev.at ? new Date(ev.at).toLocaleTimeString() : '';
  const badge = document.createElement('span');
  const last = String(ev.type || '').split('.').pop();
  badge.className = `badge ${last}`;
  badge.textContent = ev.type;
  const d = document.createElement('span');
  const s = ev.session || {};
  const parts = [];
  if (s.kind) parts.push(s.kind);
  if (s.user_id) parts.push(s.user_id);
  d.append(parts.join(' · ') + (parts.length ? ' · ' : ''));
  if (s.id) {
    const a = document.createElement('button');
    a.type = 'button';
    a.className = 'linkish';
    a.textContent = s.id.length > 14 ? '…' + s.id.slice(-12) : s.id;
    a.title = s.id;
    a.setAttribute('aria-label', `Find session ${s.id}`);
    a.addEventListener('click', () => findSession(s.id));
    d.append(a);
  }
  const reason = ev.reason || (ev.type === 'session.ended' && s.end_reason);
  if (reason) d.append(` · ${reason}`);
  if (ev.type === 'match.found' && ev.match) d.append(` · score ${ev.match.compatibility_score}`);
  if (ev.type === 'call.signal' && ev.signal) d.append(` · ${ev.signal.type}`);
  // the feed fell behind the server's resume log: say what the list is missing
  if (ev.type === 'stream.gap') d.append(`events ${ev.from}–${ev.to} were skipped; the tables were re-read`);
  item.append(t, badge, d);
  return item;
}

$('pause-btn').addEventListener('click', (e) => {
  state.paused = !state.paused;
  e.currentTarget.setAttribute('aria-pressed', String(state.paused));
  e.currentTarget.textContent = state.paused ? 'Resume' : 'Pause';
  if (!state.paused) renderFeed();
});
$('clear-btn').addEventListener('click', () => {
  state.events = [];
  renderFeed();
});
$('feed-filter').addEventListener('input', renderFeed);

// ---------- find / end ----------
$('find-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const id = $('find-id').value.trim();
  if (!id) {
    $('find-error').textContent = 'Enter a session id.';
    return;
  }
  findSession(id);
});

async function findSession(id) {
  $('find-id').value = id;
  $('find-error').textContent = '';
  $('end-result').textContent = '';
  try {
    const s = await api('GET', `/v1/sessions/${encodeURIComponent(id)}`);
    showFound(s);
  } catch (err) {
    $('found').hidden = true;
    state.found = null;
    $('find-error').textContent = err.status === 404 ? `No session ${id}.` : `Lookup failed: ${err.message}`;
  }
}

function showFound(s) {
  state.found = s;
  const kv = $('found-kv');
  const rows = [
    ['ID', s.id],
    ['Kind', s.kind],
    ['User', s.user_id],
    ['Status', s.status],
    ['Created', s.created_at],
    ['Activated', s.activated_at],
    ['Last seen', s.last_seen_at],
    ['Expires', s.expires_at],
    ['Ended', s.ended_at],
    ['End reason', s.end_reason],
    ['Parent', s.parent_id],
    ['Participants', (s.participants || []).map((p) => p.id + (p.left_at ? ' (left)' : '')).join(', ')],
  ];
  kv.replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v == null || v === '' ? '—' : String(v);
      if (k === 'Status') dd.id = 'found-status';
      if (k === 'End reason') dd.id = 'found-reason';
      return [dt, dd];
    }),
  );
  $('found-json').textContent = JSON.stringify(s, null, 2);
  $('end-session-btn').disabled = s.status === 'ended';
  $('found').hidden = false;
}

$('end-session-btn').addEventListener('click', async () => {
  const s = state.found;
  if (!s) return;
  $('end-session-btn').disabled = true;
  try {
    const r = await api('POST', `/v1/sessions/${encodeURIComponent(s.id)}/end`, { reason: 'admin' });
    showFound(r && r.id ? r : await api('GET', `/v1/sessions/${encodeURIComponent(s.id)}`));
    $('end-result').textContent = `Session ended (${state.found.end_reason ?? 'ended'}).`;
    scheduleRefresh();
  } catch (err) {
    $('end-result').textContent = `Could not end it: ${err.message}`;
    $('end-session-btn').disabled = false;
  }
});

// ---------- cleanup ----------
$('preview-btn').addEventListener('click', previewCleanup);

async function previewCleanup() {
  const box = $('cleanup-preview');
  $('cleanup-result').textContent = '';
  box.textContent = 'Checking…';
  try {
    const p = await api('GET', '/v1/admin/cleanup');
    state.preview = p;
    const wouldEnd = p.would_end || [];
    const orphans = p.orphans || [];
    const frag = document.createDocumentFragment();
    const dl = document.createElement('dl');
    dl.className = 'kv';
    dl.id = 'preview-kv';
    for (const [k, v] of [
      ['Would end', wouldEnd.length],
      ['Orphans', orphans.length],
      ['Expired invites', p.expired_invites ?? 0],
      ['Purgeable', p.purgeable ?? 0],
    ]) {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = String(v);
      dl.append(dt, dd);
    }
    frag.append(dl);
    if (wouldEnd.length) {
      const ul = document.createElement('ul');
      ul.className = 'preview-list';
      for (const w of wouldEnd.slice(0, 30)) ul.append(li(`${w.id} → ${w.reason}`));
      if (wouldEnd.length > 30) ul.append(li(`… and ${wouldEnd.length - 30} more`));
      frag.append(ul);
    }
    if (orphans.length) {
      const ul = document.createElement('ul');
      ul.className = 'preview-list';
      for (const o of orphans.slice(0, 30)) ul.append(li(typeof o === 'string' ? o : `${o.id ?? ''} ${o.reason ?? JSON.stringify(o)}`));
      frag.append(ul);
    }
    const nothing = !wouldEnd.length && !orphans.length && !p.expired_invites && !p.purgeable;
    if (nothing) {
      const q = document.createElement('p');
      q.className = 'muted';
      q.textContent = 'Nothing to clean up.';
      frag.append(q);
    }
    box.replaceChildren(frag);
    $('execute-btn').disabled = false;
  } catch (err) {
    box.textContent = `Preview failed: ${err.message}`;
  }
}

$('execute-btn').addEventListener('click', async () => {
  const btn = $('execute-btn');
  btn.disabled = true;
  try {
    const r = await api('POST', '/v1/admin/cleanup');
    $('cleanup-result').textContent =
      `Cleanup done: ended ${r.ended ?? 0}, orphans ${r.orphans ?? 0}, purged ${r.purged ?? 0}.`;
    state.preview = null;
    $('cleanup-preview').replaceChildren();
    scheduleRefresh();
  } catch (err) {
    $('cleanup-result').textContent = `Cleanup failed: ${err.message}`;
    btn.disabled = false;
  }
});

// ---------- helpers ----------
function th(text, cls) {
  const e = document.createElement('th');
  e.scope = 'col';
  e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function td(text) {
  const e = document.createElement('td');
  e.textContent = text == null ? '—' : String(text);
  return e;
}
function li(text, cls) {
  const e = document.createElement('li');
  e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function rel(iso) {
  const ms = Date.parse(iso) - Date.now();
  if (Number.isNaN(ms)) return iso;
  const s = Math.round(ms / 1000);
  return s >= 0 ? `in ${s}s` : `${-s}s ago`;
}

if (state.key) start();
else $('api-key').focus();
