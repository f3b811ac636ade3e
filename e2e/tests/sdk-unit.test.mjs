// SDK unit tests in plain Node (no server, no browser): importing the module
// touches no browser global; pure helpers; HTTP behaviour with a fake fetch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  createClient,
  backoffDelay,
  heartbeatIntervalFor,
  decodeJwtPayload,
  isOfferer,
  TetherError,
} from '../../web/sdk/tether.js';
import { parsePrometheus, histogramSummary } from '../../web/admin/metrics.js';

test('backoff: full jitter within [0, min(cap, base*2^n))', () => {
  for (let n = 0; n < 12; n++) {
    const ceil = Math.min(10_000, 250 * 2 ** n);
    assert.equal(backoffDelay(n, { random: () => 0 }), 0);
    assert.ok(backoffDelay(n, { random: () => 0.999999 }) < ceil);
    assert.ok(backoffDelay(n, { random: () => 0.999999 }) >= ceil - 1);
  }
  assert.ok(backoffDelay(50) < 10_000, 'capped at 10 s');
});

test('heartbeat interval from the kind', () => {
  assert.equal(heartbeatIntervalFor({ idle_timeout_ms: 30_000 }), 10_000);
  assert.equal(heartbeatIntervalFor({ idle_timeout_ms: 1_500 }), 1_000, 'at least 1 s');
  assert.equal(heartbeatIntervalFor({ idle_timeout_ms: null }), 20_000);
  assert.equal(heartbeatIntervalFor(null), 10_000, 'unknown kind: conservative');
});

function jwt(payload) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(payload)}.sig`;
}

test('JWT payload decoding and offerer choice', () => {
  assert.deepEqual(decodeJwtPayload(jwt({ sub: 'ada', exp: 1 })), { sub: 'ada', exp: 1 });
  assert.equal(decodeJwtPayload('nope'), null);
  assert.equal(isOfferer('alice-1', 'bob-2'), true);
  assert.equal(isOfferer('bob-2', 'alice-1'), false);
});

/** A fake fetch answering from a route table; records the requests. */
function fakeFetch(routes) {
  const calls = [];
  const f = async (url, init = {}) => {
    const u = new URL(url);
    const key = `${init.method || 'GET'} ${u.pathname}`;
    const body = init.body ? JSON.parse(init.body) : undefined;
    calls.push({ key, body, headers: init.headers, search: u.search });
    const h = routes[key];
    if (!h) return new Response(JSON.stringify({ status: 404, title: 'Not Found' }), { status: 404 });
    const [status, data] = typeof h === 'function' ? h(body, calls) : h;
    return new Response(data == null ? null : JSON.stringify(data), {
      status,
      headers: { 'Content-Type': status >= 400 ? 'application/problem+json' : 'application/json' },
    });
  };
  f.calls = calls;
  return f;
}

const session = (over = {}) => ({
  id: 's1',
  kind: 'interview',
  user_id: 'ada',
  status: 'active',
  created_at: '2026-01-01T00:00:00.000Z',
  activated_at: '2026-01-01T00:00:00.000Z',
  last_seen_at: null,
  expires_at: null,
  ended_at: null,
  end_reason: null,
  parent_id: null,
  metadata: {},
  participants: [],
  ...over,
});

function client(routes) {
  const fetch = fakeFetch(routes);
  const c = createClient({
    baseUrl: 'http://tether.test',
    getToken: () => jwt({ sub: 'ada' }),
    fetch,
    transport: 'none',
    lifecycle: false,
  });
  return { c, fetch };
}

test('startSession: 409 with blocking_session yields a conflict; takeover() retries with on_conflict', async () => {
  const blocking = session({ id: 'old' });
  const { c, fetch } = client({
    'GET /v1/kinds': [200, { kinds: [{ name: 'interview', idle_timeout_ms: 30_000 }] }],
    'POST /v1/sessions': (body) =>
      body.on_conflict === 'takeover'
        ? [201, { session: session({ id: 'new' }), superseded: [] }]
        : [409, { status: 409, title: 'Conflict', detail: 'live session exists', blocking_session: blocking }],
  });
  const r = await c.startSession('interview');
  assert.equal(r.conflict, true);
  assert.equal(r.blockingSession.id, 'old');
  const h = await r.takeover();
  assert.equal(h.conflict, false);
  assert.equal(h.id, 'new');
  assert.equal(h.heartbeatIntervalMs, 10_000);
  const posts = fetch.calls.filter((x) => x.key === 'POST /v1/sessions');
  assert.deepEqual(posts.map((p) => p.body.on_conflict), [undefined, 'takeover']);
  assert.match(posts[0].headers.Authorization, /^Bearer /);
  c.close();
});

test('heartbeat: 410 marks the handle ended with the server end_reason', async () => {
  const { c } = client({
    'GET /v1/kinds': [200, { kinds: [] }],
    'POST /v1/sessions': [201, { session: session(), superseded: [] }],
    'POST /v1/sessions/s1/heartbeat': [410, { status: 410, title: 'Gone', end_reason: 'idle_timeout' }],
  });
  const h = await c.startSession('interview', { heartbeatIntervalMs: 60_000 });
  const ended = new Promise((r) => h.on('ended', r));
  await assert.rejects(h.heartbeat(), (e) => e instanceof TetherError && e.status === 410);
  assert.equal(await ended, 'idle_timeout');
  assert.equal(h.status, 'ended');
  c.close();
});

test('errors carry the problem document', async () => {
  const { c } = client({ 'GET /v1/sessions/x': [404, { status: 404, title: 'Not Found', detail: 'no session x' }] });
  await assert.rejects(c.getSession('x'), (e) => e.status === 404 && e.detail === 'no session x');
});

test('events: dedupe by id, route session.ended to the handle, announce matches once', async () => {
  const { c } = client({
    'GET /v1/kinds': [200, { kinds: [] }],
    'POST /v1/sessions': [201, { session: session(), superseded: [] }],
  });
  const h = await c.startSession('interview', { heartbeat: false });
  const seen = [];
  c.on('*', (ev) => seen.push(ev.id));
  const matches = [];
  c.onMatch((m) => matches.push(m.call_id));
  const ended = new Promise((r) => h.on('ended', r));
  c._dispatch({ id: 1, type: 'session.activated', session: session() });
  c._dispatch({ id: 1, type: 'session.activated', session: session() });
  const m = { call_id: 'c1', partner: { user_id: 'bob' }, compatibility_score: 0.5 };
  c._dispatch({ id: 2, type: 'match.found', session: session({ id: 'c1', kind: 'call' }), match: m });
  c._announceMatch(m, null);
  c._dispatch({ id: 3, type: 'session.ended', reason: 'taken_over', session: session({ status: 'ended', end_reason: 'taken_over' }) });
  assert.deepEqual(seen, [1, 2, 3]);
  assert.deepEqual(matches, ['c1']);
  assert.equal(await ended, 'taken_over');
  c.close();
});

test('signals for a call not yet connected are buffered', async () => {
  const { c } = client({});
  await c.token();
  assert.equal(c.userId, 'ada');
  c._dispatch({ id: 9, type: 'call.signal', session: { id: 'c9' }, signal: { type: 'offer', data: { sdp: 'x' }, from: 'bob' } });
  c._dispatch({ id: 10, type: 'call.signal', session: { id: 'c9' }, signal: { type: 'offer', data: { sdp: 'y' }, from: 'ada' } });
  assert.equal(c._signalBuffers.get('c9').length, 1, 'own signals are ignored');
});

test('prometheus histogram summary', () => {
  const text = [
    '# HELP tether_expiry_lateness_seconds lateness',
    '# TYPE tether_expiry_lateness_seconds histogram',
    'tether_expiry_lateness_seconds_bucket{le="0.005"} 6',
    'tether_expiry_lateness_seconds_bucket{le="0.01"} 9',
    'tether_expiry_lateness_seconds_bucket{le="0.1"} 10',
    'tether_expiry_lateness_seconds_bucket{le="+Inf"} 10',
    'tether_expiry_lateness_seconds_sum 0.05',
    'tether_expiry_lateness_seconds_count 10',
    'tether_sessions{kind="a b",status="active"} 3',
  ].join('\n');
  const samples = parsePrometheus(text);
  assert.equal(samples.find((s) => s.name === 'tether_sessions').labels.kind, 'a b');
  const h = histogramSummary(samples, 'tether_expiry_lateness_seconds');
  assert.equal(h.count, 10);
  assert.equal(h.maxBucket, 0.1);
  assert.ok(h.p50 > 0 && h.p50 <= 0.005);
  assert.ok(h.p99 > 0.01 && h.p99 <= 0.1);
  assert.equal(histogramSummary(samples, 'nope'), null);
});

// ---- page lifecycle, with a fake window/document/navigator ----

const tick = (ms) => new Promise((r) => setTimeout(r, ms));

function withFakePage(fn) {
  return async () => {
    const win = new EventTarget();
    const doc = new EventTarget();
    doc.visibilityState = 'visible';
    const beacons = [];
    const nav = {
      sendBeacon(url, blob) {
        beacons.push({ url, blob });
        return true;
      },
    };
    const saved = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
    globalThis.window = win;
    globalThis.document = doc;
    Object.defineProperty(globalThis, 'navigator', { value: nav, configurable: true, writable: true });
    try {
      await fn({ win, doc, beacons });
    } finally {
      delete globalThis.window;
      delete globalThis.document;
      if (saved) Object.defineProperty(globalThis, 'navigator', saved);
      else delete globalThis.navigator;
    }
  };
}

function lifecycleClient(routes) {
  const fetch = fakeFetch(routes);
  const c = createClient({ baseUrl: 'http://tether.test', getToken: () => jwt({ sub: 'ada' }), fetch, transport: 'none' });
  return { c, fetch };
}

test('pagehide: sendBeacon to /beacon with {"token"} as text/plain; bfcache restore starts a new session', withFakePage(async ({ win, beacons }) => {
  let n = 0;
  const { c } = lifecycleClient({
    'GET /v1/kinds': [200, { kinds: [] }],
    'POST /v1/sessions': () => [201, { session: session({ id: `s${++n}` }), superseded: [] }],
    'GET /v1/sessions/s1': [200, session({ id: 's1', status: 'ended', end_reason: 'closed', ended_at: '2026-01-01T00:00:01.000Z' })],
  });
  const h = await c.startSession('interview', { heartbeat: false });
  win.dispatchEvent(Object.assign(new Event('pagehide'), { persisted: true }));
  assert.equal(beacons.length, 1);
  assert.equal(beacons[0].url, 'http://tether.test/v1/sessions/s1/beacon');
  assert.equal(beacons[0].blob.type, 'text/plain');
  assert.deepEqual(JSON.parse(await beacons[0].blob.text()), { token: jwt({ sub: 'ada' }) });

  const restarted = new Promise((r) => h.on('restarted', r));
  win.dispatchEvent(Object.assign(new Event('pageshow'), { persisted: true }));
  const info = await restarted;
  assert.equal(info.previousId, 's1');
  assert.equal(h.id, 's2');
  assert.equal(h.ended, false);
  c.close();
}));

test('endWhenHiddenMs: ends after the delay hidden, not if visible again first; restarts on return', withFakePage(async ({ doc }) => {
  let n = 0;
  const ends = [];
  const { c } = lifecycleClient({
    'GET /v1/kinds': [200, { kinds: [] }],
    'POST /v1/sessions': () => [201, { session: session({ id: `s${++n}` }), superseded: [] }],
    'POST /v1/sessions/s1/end': (body) => {
      ends.push(body);
      return [200, session({ id: 's1', status: 'ended', end_reason: 'ended', ended_at: '2026-01-01T00:00:01.000Z' })];
    },
    'GET /v1/sessions/s1': [200, session({ id: 's1', status: 'ended', end_reason: 'ended', ended_at: '2026-01-01T00:00:01.000Z' })],
  });
  const h = await c.startSession('interview', { heartbeat: false, endWhenHiddenMs: 60 });
  const show = (state) => {
    doc.visibilityState = state;
    doc.dispatchEvent(new Event('visibilitychange'));
  };
  show('hidden');
  await tick(20);
  show('visible');
  await tick(80);
  assert.equal(ends.length, 0, 'cancelled when visible again');

  const ended = new Promise((r) => h.on('ended', r));
  show('hidden');
  await tick(100);
  assert.equal(await ended, 'ended');
  assert.equal(ends.length, 1);

  const restarted = new Promise((r) => h.on('restarted', r));
  show('visible');
  assert.equal((await restarted).previousId, 's1');
  assert.equal(h.id, 's2');
  c.close();
}));

// ---- stream.gap on both transports, with fake WebSocket / EventSource ----

/** A fake WebSocket class whose instances the test drives; `next()` resolves with the next one built. */
function fakeWebSocketClass() {
  const waiting = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.sent = [];
      const w = waiting.shift();
      if (w) w(this);
    }
    send(text) {
      this.sent.push(JSON.parse(text));
    }
    close() {}
    /** The server says something (a JSON frame). */
    receive(frame) {
      this.onmessage({ data: JSON.stringify(frame) });
    }
  }
  FakeWebSocket.next = () => new Promise((r) => waiting.push(r));
  return FakeWebSocket;
}

/** A fake EventSource class: named events reach only listeners added for their name, as in browsers. */
function fakeEventSourceClass() {
  const waiting = [];
  class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.listeners = new Map();
      const w = waiting.shift();
      if (w) w(this);
    }
    addEventListener(type, fn) {
      this.listeners.set(type, [...(this.listeners.get(type) || []), fn]);
    }
    close() {
      this.readyState = 2;
    }
    open() {
      this.readyState = 1;
      this.onopen();
    }
    /** The server sends `id: <id>\nevent: <type>\ndata: <json>`. */
    receive(type, id, data) {
      const m = { type, lastEventId: id == null ? '' : String(id), data: JSON.stringify(data) };
      for (const fn of this.listeners.get(type) || []) fn(m);
    }
  }
  FakeEventSource.next = () => new Promise((r) => waiting.push(r));
  return FakeEventSource;
}

function transportClient(routes, extra) {
  const fetch = fakeFetch(routes);
  const c = createClient({
    baseUrl: 'http://tether.test',
    getToken: () => jwt({ sub: 'ada' }),
    fetch,
    lifecycle: false,
    ...extra,
  });
  return { c, fetch };
}

const ended = (over) =>
  session({ status: 'ended', end_reason: 'idle_timeout', ended_at: '2026-01-01T00:05:00.000Z', ...over });

test('stream.gap on SSE: the app is told, tracked sessions are re-read, one that ended meanwhile ends as if its event had come', async () => {
  const ES = fakeEventSourceClass();
  const gaps = [];
  let reads = 0;
  const { c, fetch } = transportClient(
    {
      'GET /v1/kinds': [200, { kinds: [] }],
      'POST /v1/sessions': [201, { session: session(), superseded: [] }],
      'GET /v1/sessions/s1': () => [200, ++reads === 1 ? session() : ended()],
    },
    { transport: 'sse', EventSource: ES, onGap: (g) => gaps.push(['option', g]) },
  );
  const opened = ES.next();
  c.connect();
  const es = await opened;
  assert.ok(es.listeners.has('stream.gap'), 'the SSE stream listens for stream.gap');
  assert.ok(!es.listeners.has('session.updated'), 'and for no event the server does not send');
  es.open();
  assert.equal(c.activeTransport, 'sse');
  const h = await c.startSession('interview', { heartbeat: false });
  c.on('stream.gap', (g) => gaps.push(['on', g]));
  const appEnded = [];
  c.on('session.ended', (ev) => appEnded.push(ev));
  const handleEnded = new Promise((r) => h.on('ended', (reason, s) => r({ reason, s })));

  // a live session is only refreshed
  es.receive('stream.gap', 7, { type: 'stream.gap', from: 3, to: 7 });
  await waitUntil(() => reads === 1);
  assert.equal(h.ended, false);
  assert.deepEqual(gaps, [
    ['option', { type: 'stream.gap', from: 3, to: 7, id: 7 }],
    ['on', { type: 'stream.gap', from: 3, to: 7, id: 7 }],
  ]);

  // one that ended meanwhile gets the session.ended handling, with the server's reason
  es.receive('stream.gap', 20, { type: 'stream.gap', from: 8, to: 20 });
  const { reason, s } = await handleEnded;
  assert.equal(reason, 'idle_timeout');
  assert.equal(s.status, 'ended');
  assert.equal(appEnded.length, 1);
  assert.equal(appEnded[0].reason, 'idle_timeout');
  assert.equal(appEnded[0].resynced, true);
  assert.equal(appEnded[0].session.id, 's1');

  // the server's own session.ended arriving later does not end it twice for the app
  es.receive('session.ended', 21, { id: 21, type: 'session.ended', reason: 'idle_timeout', session: ended() });
  assert.equal(appEnded.length, 1);
  assert.equal(fetch.calls.filter((x) => x.key === 'GET /v1/sessions/s1').length, 2);
  assert.equal(c._lastEventId, 21, 'a later SSE resume starts after the skipped ids');
  c.close();
});

test('stream.gap on the WebSocket: re-reads the session and asks for a match it missed', async () => {
  const WS = fakeWebSocketClass();
  const gaps = [];
  const matches = [];
  const m = { call_id: 'c7', partner: { user_id: 'bob' }, compatibility_score: 0.7 };
  const matching = session({ id: 'm1', kind: 'matching' });
  const { c, fetch } = transportClient(
    {
      'GET /v1/kinds': [200, { kinds: [] }],
      'POST /v1/matching/start': [201, { session: matching }],
      'GET /v1/sessions/m1': [200, matching],
      'GET /v1/matching/next': () =>
        fetch.calls.some((x) => x.key === 'GET /v1/sessions/m1') ? [200, { match_found: true, match: m }] : [200, { match_found: false }],
    },
    { transport: 'ws', WebSocket: WS },
  );
  const opened = WS.next();
  c.connect();
  const ws = await opened;
  ws.onopen();
  ws.receive({ type: 'pong' });
  assert.equal(c.activeTransport, 'ws');
  c.on('*', (ev) => ev.type === 'stream.gap' && gaps.push(ev));
  c.onMatch((x) => matches.push(x.call_id));
  const h = await c.startMatching({ min_age: 20, max_age: 40 }, { heartbeat: false });
  await waitUntil(() => fetch.calls.some((x) => x.key === 'GET /v1/matching/next'));
  assert.deepEqual(matches, []);

  ws.receive({ type: 'stream.gap', from: 100, to: 250 });
  await waitUntil(() => matches.length === 1);
  assert.deepEqual(matches, ['c7']);
  assert.deepEqual(gaps, [{ type: 'stream.gap', from: 100, to: 250 }]);
  assert.equal(h.ended, false);
  c.close();
});

/** Wait for the SDK's pending promise chains (fake fetch answers on microtasks and the next turns). */
async function waitUntil(cond, what = 'condition') {
  for (let i = 0; i < 200; i++) {
    if (cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  assert.fail(`never happened: ${what}`);
}

test('revive(): POST /revive tracks the session again; a blocking session yields a conflict whose takeover() revives', async () => {
  const revived = session({ id: 'old' });
  const { c, fetch } = client({
    'GET /v1/kinds': [200, { kinds: [{ name: 'interview', idle_timeout_ms: 30_000 }] }],
    'POST /v1/sessions/old/revive': (body) =>
      body.on_conflict === 'takeover'
        ? [200, revived]
        : [409, { status: 409, title: 'Conflict', detail: 'live session exists', blocking_session: session({ id: 'new' }) }],
    'POST /v1/sessions/gone/revive': [409, { status: 409, title: 'Conflict', detail: 'the revive window (2m after the end) closed at …' }],
  });
  const r = await c.revive('old');
  assert.equal(r.conflict, true);
  assert.equal(r.blockingSession.id, 'new');
  const h = await r.takeover();
  assert.equal(h.conflict, false);
  assert.equal(h.id, 'old');
  assert.equal(h.status, 'active');
  assert.equal(h.heartbeatIntervalMs, 10_000, 'heartbeats at the kind pace, as for a started session');
  const posts = fetch.calls.filter((x) => x.key === 'POST /v1/sessions/old/revive');
  assert.deepEqual(posts.map((p) => p.body.on_conflict), [undefined, 'takeover']);
  // not revivable: the 409 reaches the app, which starts a new session instead
  await assert.rejects(c.revive('gone'), (e) => e instanceof TetherError && e.status === 409 && /window/.test(e.detail));
  c.close();
});

test('session.expiring reaches onExpiring (session option and client hook) and the handle; session.revived un-ends a handle', async () => {
  const { c } = client({
    'GET /v1/kinds': [200, { kinds: [] }],
    'POST /v1/sessions': [201, { session: session(), superseded: [] }],
  });
  const fromOption = [];
  const h = await c.startSession('interview', { heartbeat: false, onExpiring: (ev, handle) => fromOption.push([ev.deadline, handle]) });
  const fromClient = [];
  c.onExpiring((ev, handle) => fromClient.push([ev.reason, handle]));
  const fromHandle = [];
  h.on('expiring', (ev) => fromHandle.push(ev.deadline));
  const deadline = '2026-01-01T00:01:00.000Z';
  c._dispatch({ id: 1, type: 'session.expiring', at: '2026-01-01T00:00:50.000Z', deadline, reason: 'idle_timeout', session: session({ expires_at: deadline }) });
  assert.deepEqual(fromOption, [[deadline, h]]);
  assert.deepEqual(fromClient, [['idle_timeout', h]]);
  assert.deepEqual(fromHandle, [deadline]);
  assert.equal(h.session.expires_at, deadline);

  // ended, then revived (elsewhere): live again, and its next end is news again
  const ends = [];
  h.on('ended', (reason) => ends.push(reason));
  const revivals = [];
  h.on('revived', (s) => revivals.push(s.status));
  c._dispatch({ id: 2, type: 'session.ended', reason: 'idle_timeout', session: session({ status: 'ended', end_reason: 'idle_timeout', ended_at: deadline }) });
  assert.equal(h.ended, true);
  c._dispatch({ id: 3, type: 'session.revived', session: session() });
  assert.equal(h.ended, false);
  assert.equal(h.status, 'active');
  assert.deepEqual(revivals, ['active']);
  c._dispatch({ id: 4, type: 'session.ended', reason: 'disconnected', session: session({ status: 'ended', end_reason: 'disconnected' }) });
  assert.deepEqual(ends, ['idle_timeout', 'disconnected']);
  c.close();
});

// ---- several server URLs (`urls`): which requests move on, and how the event connection follows ----

import { Endpoints, neverReachedServer, safeToRepeat } from '../../web/sdk/lib/endpoints.js';

/** Node's fetch error for a refused connection (undici puts the code in `cause`). */
const refused = () => Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
/** A browser's fetch error: it never says why. */
const browserFailure = () => new TypeError('Failed to fetch');

/**
 * A fake fetch for two nodes a.test and b.test: `down` maps a host to the
 * error its requests reject with; routes are keyed "HOST METHOD PATH".
 */
function nodesFetch(routes, down = new Map()) {
  const calls = [];
  const f = async (url, init = {}) => {
    const u = new URL(url);
    const key = `${u.host} ${init.method || 'GET'} ${u.pathname}`;
    calls.push({ key, headers: init.headers, body: init.body });
    if (down.has(u.host)) throw down.get(u.host)();
    const h = routes[key];
    if (!h) return new Response(JSON.stringify({ status: 404, title: 'Not Found' }), { status: 404 });
    const [status, data, headers] = typeof h === 'function' ? h(init) : h;
    return new Response(data == null ? null : JSON.stringify(data), {
      status,
      headers: { ...(data == null ? {} : { 'Content-Type': 'application/json' }), ...(headers || {}) },
    });
  };
  f.calls = calls;
  f.down = down;
  return f;
}

function nodesClient(routes, extra = {}) {
  const fetch = nodesFetch(routes);
  const c = createClient({
    urls: ['http://a.test/', 'http://b.test'],
    getToken: () => jwt({ sub: 'ada' }),
    fetch,
    transport: 'none',
    lifecycle: false,
    ...extra,
  });
  return { c, fetch };
}

test('urls: the retry rule — which requests are safe to send again, and which errors prove nothing was sent', () => {
  for (const [m, p] of [
    ['GET', '/v1/sessions/s1'],
    ['GET', '/v1/calls/c1/signals?user_id=x'],
    ['PUT', '/v1/profiles/ada'],
    ['DELETE', '/v1/sessions/s1/participants/me'],
    ['POST', '/v1/sessions/s1/heartbeat'],
    ['POST', '/v1/sessions/s1/participants/me/heartbeat'],
    ['post', '/v1/sessions/s1/end'],
    ['POST', '/v1/calls/c1/end'],
  ]) {
    assert.equal(safeToRepeat(m, p), true, `${m} ${p}`);
  }
  for (const [m, p] of [
    ['POST', '/v1/sessions'],
    ['POST', '/v1/sessions/s1/revive'],
    ['POST', '/v1/sessions/s1/complete'],
    ['POST', '/v1/matching/start'],
    ['POST', '/v1/matching/decision'],
    ['POST', '/v1/calls/c1/signals'],
    ['POST', '/v1/sessions/s1/heartbeat/extra'],
    ['PATCH', '/v1/sessions/s1'],
  ]) {
    assert.equal(safeToRepeat(m, p), false, `${m} ${p}`);
  }
  assert.equal(neverReachedServer(refused()), true);
  const happyEyeballs = Object.assign(new TypeError('fetch failed'), {
    cause: Object.assign(new AggregateError([Object.assign(new Error('a'), { code: 'ECONNREFUSED' }), Object.assign(new Error('b'), { code: 'EHOSTUNREACH' })]), { code: 'ECONNREFUSED' }),
  });
  assert.equal(neverReachedServer(happyEyeballs), true, 'every address refused');
  const reset = Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }) });
  assert.equal(neverReachedServer(reset), false, 'a reset may come after the request was read');
  assert.equal(neverReachedServer(browserFailure()), false, 'a browser never says');

  const e = new Endpoints(['A', 'B', 'C']);
  assert.equal(e.current, 'A');
  assert.equal(e.failed('A'), 'B');
  assert.equal(e.failed('A'), 'B', 'a late report about a URL already left changes nothing');
  assert.equal(e.failed('B'), 'C');
  assert.equal(e.failed('C'), 'A', 'round the list');
  assert.equal(new Endpoints(['only']).failed('only'), 'only');
  assert.throws(() => createClient({ urls: [], getToken: () => 't' }), /urls/);
  assert.throws(() => createClient({ urls: 'http://a', getToken: () => 't' }), /urls/);
});

test('urls: a request without an answer moves to the next URL; only a safe one is sent again', async () => {
  const s = session();
  const { c, fetch } = nodesClient({
    'a.test GET /v1/sessions/s1': [200, s],
    'b.test GET /v1/sessions/s1': [200, { ...s, kind: 'from-b' }],
    'b.test POST /v1/sessions': [201, { session: session({ id: 's2' }), superseded: [] }],
    'a.test POST /v1/sessions': [201, { session: session({ id: 's3' }), superseded: [] }],
    'b.test POST /v1/sessions/s1/end': [200, ended({ end_reason: 'ended' })],
    'a.test GET /v1/kinds': [503, { status: 503, title: 'Unavailable', detail: 'no owner' }],
  });
  assert.deepEqual(c.urls, ['http://a.test', 'http://b.test']);
  assert.equal(c.baseUrl, 'http://a.test', 'starts at the first');
  assert.equal((await c.getSession('s1')).kind, 'interview');

  // an idempotent read: sent again to b, which answers
  fetch.down.set('a.test', browserFailure);
  assert.equal((await c.getSession('s1')).kind, 'from-b');
  assert.equal(c.baseUrl, 'http://b.test');
  assert.deepEqual(fetch.calls.slice(-2).map((x) => x.key), ['a.test GET /v1/sessions/s1', 'b.test GET /v1/sessions/s1']);

  // a start that got no answer in a browser may have started: not sent again, but the next request goes on
  fetch.down.clear();
  fetch.down.set('b.test', browserFailure);
  fetch.calls.length = 0;
  await assert.rejects(c.request('POST', '/v1/sessions', { kind: 'interview' }), (e) => e instanceof TetherError && e.status === 0);
  assert.deepEqual(fetch.calls.map((x) => x.key), ['b.test POST /v1/sessions']);
  assert.equal(c.baseUrl, 'http://a.test');
  assert.equal((await c.request('POST', '/v1/sessions', { kind: 'interview' })).session.id, 's3');

  // the same start refused at the connection (Node says so): it never arrived, so it goes to the next
  fetch.down.clear();
  fetch.down.set('a.test', refused);
  fetch.calls.length = 0;
  const r = await c.request('POST', '/v1/sessions', { kind: 'interview' });
  assert.equal(r.session.id, 's2');
  assert.deepEqual(fetch.calls.map((x) => [x.key, x.body]), [
    ['a.test POST /v1/sessions', '{"kind":"interview"}'],
    ['b.test POST /v1/sessions', '{"kind":"interview"}'],
  ]);

  // `idempotent: true`, and ending (idempotent on the server), are sent again too; once only
  fetch.down.clear();
  fetch.down.set('b.test', browserFailure);
  fetch.down.set('a.test', browserFailure);
  fetch.calls.length = 0;
  await assert.rejects(c.endSession('s1'), (e) => e.status === 0);
  assert.deepEqual(fetch.calls.map((x) => x.key), ['b.test POST /v1/sessions/s1/end', 'a.test POST /v1/sessions/s1/end']);
  assert.equal(c.baseUrl, 'http://b.test', 'both failed: the current URL moved past each');
  fetch.down.delete('b.test');
  fetch.calls.length = 0;
  assert.equal((await c.endSession('s1')).status, 'ended');
  assert.deepEqual(fetch.calls.map((x) => x.key), ['b.test POST /v1/sessions/s1/end']);

  // an answer, even 503, is an answer: the URL stays
  fetch.down.clear();
  c._endpoints.failed('http://b.test');
  assert.equal(c.baseUrl, 'http://a.test');
  await assert.rejects(c.kinds(), (e) => e.status === 503);
  assert.equal(c.baseUrl, 'http://a.test');
  // an abort is the caller's: the URL stays
  fetch.down.set('a.test', () => Object.assign(new Error('aborted'), { name: 'AbortError' }));
  await assert.rejects(c.getSession('s1'), (e) => e.status === 0);
  assert.equal(c.baseUrl, 'http://a.test');
  c.close();
});

test('urls: HTTP heartbeats ask for return=minimal, follow the next URL, and take the deadline from Tether-Expires-At', async () => {
  const at = '2026-01-01T00:01:00.000Z';
  const { c, fetch } = nodesClient({
    'a.test GET /v1/kinds': [200, { kinds: [] }],
    'a.test POST /v1/sessions': [201, { session: session(), superseded: [] }],
    'b.test POST /v1/sessions/s1/heartbeat': (init) =>
      init.headers.Prefer === 'return=minimal' ? [204, null, { 'Tether-Expires-At': at, 'Preference-Applied': 'return=minimal' }] : [200, session()],
    'a.test POST /v1/sessions/s1/heartbeat': [200, session({ expires_at: '2026-01-01T00:02:00.000Z' })],
  });
  const h = await c.startSession('interview', { heartbeatIntervalMs: 60_000 });
  const updates = [];
  h.on('update', (s) => updates.push(s.expires_at));
  fetch.down.set('a.test', browserFailure);
  const s = await h.heartbeat();
  assert.equal(s.expires_at, at);
  assert.equal(h.session.expires_at, at);
  assert.equal(h.session.status, 'active', 'the rest of the session is kept');
  assert.deepEqual(updates, [at]);
  const beats = fetch.calls.filter((x) => x.key.endsWith('/heartbeat'));
  assert.deepEqual(beats.map((x) => [x.key, x.headers.Prefer]), [
    ['a.test POST /v1/sessions/s1/heartbeat', 'return=minimal'],
    ['b.test POST /v1/sessions/s1/heartbeat', 'return=minimal'],
  ]);
  // a server that ignores the preference answers the session: taken as before
  fetch.down.clear();
  c._endpoints.failed('http://b.test');
  await h.heartbeat();
  assert.equal(h.session.expires_at, '2026-01-01T00:02:00.000Z');
  c.close();
});

test('urls: the beacon goes to the current URL', withFakePage(async ({ win, beacons }) => {
  const fetch = nodesFetch({
    'a.test GET /v1/kinds': [200, { kinds: [] }],
    'a.test POST /v1/sessions': [201, { session: session(), superseded: [] }],
  });
  const c = createClient({ urls: ['http://a.test', 'http://b.test'], getToken: () => jwt({ sub: 'ada' }), fetch, transport: 'none' });
  await c.startSession('interview', { heartbeat: false });
  c._endpoints.failed('http://a.test');
  win.dispatchEvent(new Event('pagehide'));
  assert.deepEqual(beacons.map((b) => b.url), ['http://b.test/v1/sessions/s1/beacon']);
  c.close();
}));

test('urls: a WebSocket that cannot open moves to the next URL; one that dropped is retried where it was, then moves; a reopen replays missed events from the history', async () => {
  const WS = fakeWebSocketClass();
  const history = [
    { id: 5, type: 'session.started', at: 't', session: session() },
    { id: 9, type: 'participant.joined', at: 't', session: session({ participants: [{ id: 'bob' }] }), participant: { id: 'bob' } },
    { id: 10, type: 'call.signal', at: 't', session: session(), signal: { type: 'offer', data: {}, from: 'bob' } },
    { id: 12, type: 'session.expiring', at: 't', session: session(), deadline: 'd', reason: 'idle_timeout' },
  ];
  const { c, fetch } = nodesClient(
    {
      'a.test GET /v1/kinds': [200, { kinds: [] }],
      'a.test POST /v1/sessions': [201, { session: session(), superseded: [] }],
      'b.test GET /v1/sessions/s1/history': [200, { events: history }],
      'b.test GET /v1/sessions/s1': [200, session()],
      'a.test GET /v1/sessions/s1': [200, session()],
    },
    { transport: 'ws', WebSocket: WS, backoff: { baseMs: 1, capMs: 1 } },
  );
  const seen = [];
  c.on('*', (ev) => seen.push([ev.id, ev.type, ev.replayed === true]));
  let next = WS.next();
  c.connect();
  const a1 = await next;
  assert.match(a1.url, /^ws:\/\/a\.test\/v1\/ws\?token=/);
  a1.onopen();
  a1.receive({ type: 'pong' });
  const h = await c.startSession('interview', { heartbeat: false });
  a1.receive({ id: 5, type: 'session.started', at: 't', session: session() });
  assert.equal(fetch.calls.some((x) => x.key.endsWith('/history')), false, 'the first open replays nothing');

  // a dropped socket is retried at the same URL first…
  next = WS.next();
  a1.onclose({ code: 1006 });
  const a2 = await next;
  assert.match(a2.url, /^ws:\/\/a\.test\//);
  // …which is dead now (closes without opening): the next one goes to b
  next = WS.next();
  a2.onclose({ code: 1006 });
  const b1 = await next;
  assert.match(b1.url, /^ws:\/\/b\.test\//);
  assert.equal(c.baseUrl, 'http://b.test', 'HTTP follows the event connection');

  // open on b: the missed events after id 5 come from the history, in order, once; signals are a call's
  b1.onopen();
  b1.receive({ type: 'pong' });
  b1.receive({ id: 12, type: 'session.expiring', at: 't', session: session(), deadline: 'd', reason: 'idle_timeout' });
  await waitUntil(() => seen.some((x) => x[0] === 9), 'the replayed participant.joined');
  await waitUntil(() => fetch.calls.some((x) => x.key === 'b.test GET /v1/sessions/s1'), 'the re-read');
  assert.deepEqual(seen, [
    [5, 'session.started', false],
    [12, 'session.expiring', false],
    [9, 'participant.joined', true],
  ]);
  assert.equal(fetch.calls.filter((x) => x.key.endsWith('/history')).length, 1);
  assert.equal(h.session.participants.length, 0, 'an event older than one applied does not roll the session back');
  assert.equal(c._lastEventId, 12);
  c.close();
});

test('urls: an SSE stream that cannot open moves to the next URL and resumes there after the last event seen; one that dropped reconnects where it was', async () => {
  const ES = fakeEventSourceClass();
  const { c } = nodesClient({}, { transport: 'sse', EventSource: ES, backoff: { baseMs: 1, capMs: 1 } });
  let next = ES.next();
  c.connect();
  const a1 = await next;
  assert.match(a1.url, /^http:\/\/a\.test\/v1\/events\?token=[^&]+$/);
  a1.open();
  a1.receive('session.started', 41, { id: 41, type: 'session.started', at: 't', session: session() });
  assert.equal(c._lastEventId, 41);

  next = ES.next();
  a1.onerror();
  const a2 = await next;
  assert.equal(a1.readyState, 2, 'the SDK closed the EventSource: it reconnects itself');
  assert.match(a2.url, /^http:\/\/a\.test\/v1\/events\?.*last_event_id=41$/, 'dropped after opening: same URL first');
  next = ES.next();
  a2.onerror();
  const b1 = await next;
  assert.match(b1.url, /^http:\/\/b\.test\/v1\/events\?.*last_event_id=41$/, 'never opened: the next URL, resuming after 41');
  assert.equal(c.baseUrl, 'http://b.test');
  b1.open();
  assert.equal(c.connectionState, 'open');
  c.close();
});
