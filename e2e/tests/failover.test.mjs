// SDK failover across cluster nodes (issue 11 item 7), in Chromium against a
// real 2-node cluster on a fresh PostgreSQL schema. Two pages — one on the
// WebSocket, one on SSE — are given `urls: [A, B]` (one route per node on the
// page's origin, see lib/cluster.mjs) and each tracks a heartbeat-driven
// session. Node A, which holds the lease, is SIGKILLed while B's route is
// briefly refused too, so events happen while the pages are connected
// nowhere. Each page must come back on B, receive what it missed (the SSE
// stream by resuming with its last event id, the WebSocket by replaying the
// session's history), keep its session alive past its idle timeout through
// B, and receive the end made through B's API as the server's own
// `session.ended` — every event of its session, in order, none missed.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, sleep, waitFor } from '../lib/harness.mjs';
import { startCluster, startNodeProxy } from '../lib/cluster.mjs';

const IDLE_MS = 6000;
const KINDS = `
[kinds.e2e_live]
idle_timeout = "${IDLE_MS / 1000}s"
`;

let cluster;
let proxy;
let browser;
after(async () => {
  await browser?.close();
  await proxy?.close();
  await cluster?.stop();
});

// as in the Rust suites: PostgreSQL is part of the test machine (an unreachable
// one is a failure), unless TETHER_TEST_POSTGRES=off leaves it out
const pgOff = process.env.TETHER_TEST_POSTGRES === 'off';

/** In the page: a client on `urls` tracking one `e2e_live` session, recording what it hears. */
async function openPage(b, origin, { urls, token, transport }) {
  const page = await b.newPage(origin + '/');
  const id = await page.evaluate(
    async ({ urls, token, transport }) => {
      const { createClient } = await import('/sdk/tether.js');
      const client = createClient({ urls, getToken: () => token, transport, backoff: { baseMs: 100, capMs: 500 }, debug: true });
      const t = { client, events: [], errors: [], ended: null };
      window.__t = t;
      client.on('*', (ev) =>
        t.events.push({
          id: ev.id ?? null,
          type: ev.type,
          sid: ev.session?.id ?? null,
          replayed: !!ev.replayed,
          resynced: !!ev.resynced,
          reason: ev.reason ?? null,
        }),
      );
      client.on('error', (e) => t.errors.push(String((e && e.message) || e)));
      const h = await client.startSession('e2e_live');
      h.on('ended', (reason) => (t.ended = reason));
      t.handle = h;
      return h.id;
    },
    { urls, token, transport },
  );
  return { page, id };
}

const state = (page) =>
  page.evaluate(() => {
    const t = window.__t;
    return {
      url: t.client.baseUrl,
      connection: t.client.connectionState,
      transport: t.client.activeTransport,
      events: t.events,
      ended: t.ended,
      heartbeatMs: t.handle.heartbeatIntervalMs,
    };
  });

test('a page on urls [A, B] moves to B when A is killed, misses no event of its session, and keeps it alive through B', async (t) => {
  if (pgOff) {
    t.skip('TETHER_TEST_POSTGRES=off');
    return;
  }
  cluster = await startCluster('failover', { count: 2, kinds: KINDS });
  const [A, B] = cluster.nodes;
  assert.equal(await cluster.leader(), A, 'A holds the lease: its death moves the work');
  proxy = await startNodeProxy({ a: A.url, b: B.url });
  const urls = [proxy.url('a'), proxy.url('b')];

  const tokens = {};
  for (const user of ['fo-ws', 'fo-sse']) {
    const r = await fetch(A.url + '/v1/demo/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user_id: user }),
    });
    tokens[user] = (await r.json()).token;
  }
  browser = await launchBrowser('failover');
  // 'ws' alone: in 'auto' the outage's failed opens would bridge with SSE, and
  // this page is here for the WebSocket's way back
  const ws = await openPage(browser, proxy.origin, { urls, token: tokens['fo-ws'], transport: 'ws' });
  const sse = await openPage(browser, proxy.origin, { urls, token: tokens['fo-sse'], transport: 'sse' });
  const pages = [
    { name: 'ws', ...ws, transport: 'ws' },
    { name: 'sse', ...sse, transport: 'sse' },
  ];
  for (const p of pages) {
    await waitFor(
      async () => {
        const s = await state(p.page);
        return s.connection === 'open' && s.transport === p.transport && s.url === urls[0] && s.events.some((e) => e.type === 'session.started' && e.sid === p.id);
      },
      { what: `the ${p.name} page connected to A with its session.started` },
    );
  }

  // A dies; B's route refuses for a moment: the pages are connected nowhere
  proxy.block('b');
  const killedAt = Date.now();
  await A.kill9();
  for (const p of pages) {
    await waitFor(async () => (await state(p.page)).connection !== 'open', { what: `the ${p.name} page to notice` });
  }
  // meanwhile, through B (which takes the lease over), something happens to each session
  for (const p of pages) {
    const r = await B.api('POST', `/v1/sessions/${p.id}/participants`, { user_id: `guest-of-${p.name}` });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
  assert.equal(await cluster.leader(), B);
  proxy.unblock('b');
  const reopenedFrom = Date.now();

  for (const p of pages) {
    const s = await waitFor(
      async () => {
        const s = await state(p.page);
        return s.connection === 'open' && s.url === urls[1] && s.events.some((e) => e.type === 'participant.joined' && e.sid === p.id) && s;
      },
      { timeoutMs: 15_000, what: `the ${p.name} page on B with the participant.joined it missed` },
    );
    assert.equal(s.transport, p.transport);
    const joined = s.events.find((e) => e.type === 'participant.joined' && e.sid === p.id);
    assert.ok(joined.id != null, 'the event itself, with its id (not a re-read)');
    // the WebSocket has no resume point: the SDK replayed it from the history; SSE resumed
    assert.equal(joined.replayed, p.transport === 'ws', JSON.stringify(joined));
    t.diagnostic(`${p.name}: back on B and caught up ${Date.now() - reopenedFrom} ms after B's route reopened (A killed ${reopenedFrom - killedAt} ms before that)`);
  }

  // heartbeats through B keep both sessions alive past their idle timeout
  const hbMs = (await state(ws.page)).heartbeatMs;
  assert.ok(hbMs > 0 && hbMs < IDLE_MS, `heartbeats every ${hbMs} ms`);
  await sleep(IDLE_MS + 1000);
  for (const p of pages) {
    const s = await B.session(p.id);
    assert.equal(s.status, 'active', `the ${p.name} page's session outlived its idle timeout through B: ${JSON.stringify(s)}`);
  }

  // an end through B's API arrives as the server's session.ended
  for (const p of pages) {
    const r = await B.api('POST', `/v1/sessions/${p.id}/end`, { reason: 'admin' });
    assert.equal(r.status, 200);
  }
  for (const p of pages) {
    const s = await waitFor(
      async () => {
        const s = await state(p.page);
        return s.ended && s;
      },
      { what: `the ${p.name} page's handle to end` },
    );
    assert.equal(s.ended, 'admin');
    const end = s.events.find((e) => e.type === 'session.ended' && e.sid === p.id);
    assert.ok(end.id != null && !end.resynced && !end.replayed, `the server's own event, live: ${JSON.stringify(end)}`);

    // none missed: the page heard every event of its session's history, in order, once
    const history = await B.api('GET', `/v1/sessions/${p.id}/history`);
    assert.equal(history.status, 200);
    const want = history.body.events.map((e) => `${e.id} ${e.type}`);
    const got = s.events.filter((e) => e.sid === p.id && e.id != null).map((e) => `${e.id} ${e.type}`);
    assert.deepEqual(got, want, `the ${p.name} page's events are its session's history`);
    assert.deepEqual(
      want.map((x) => x.split(' ')[1]),
      ['session.started', 'session.activated', 'participant.joined', 'session.ended'],
    );
  }
});
