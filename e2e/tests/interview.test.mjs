// Seed 003's story on the interview demo (kind `interview`, per_user="reject",
// disconnect_grace 3 s, revive_window 2 m): a browser crashes mid-interview;
// coming back at once shows "Previous session detected" and "Clear previous
// session & continue" takes over; left alone, the server ends a crashed
// browser's session `disconnected` on its own, and coming back then offers
// "Continue your interview" (a revive of the same session; a new one when the
// server refuses); a closed tab ends it at once (beacon).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, launchBrowser, waitFor, ARTIFACTS } from '../lib/harness.mjs';

let srv;
const browsers = [];
before(async () => {
  srv = await startServer('interview');
});
after(async () => {
  for (const b of browsers) await b.close();
  if (srv) await srv.stop();
});
async function browser(label, opts) {
  const b = await launchBrowser(label, opts);
  browsers.push(b);
  return b;
}

const user = `ivy-${Math.random().toString(36).slice(2, 8)}`;
const pageUrl = () => `${srv.url}/demo/interview?user=${user}`;

async function startInterview(page) {
  await page.getByRole('button', { name: 'Start interview' }).click();
  await page.waitForFunction(() => ['live', 'conflict', 'continue'].includes(window.__demo.state), null, { timeout: 10_000 });
  return page.evaluate(() => ({
    state: window.__demo.state,
    sessionId: window.__demo.sessionId,
    blocking: window.__demo.blockingSessionId,
    revivable: window.__demo.revivable && window.__demo.revivable.id,
  }));
}

async function crashedAndEnded(srv, b, sessionId) {
  b.kill();
  return waitFor(
    async () => {
      const s = await srv.session(sessionId);
      return s.status === 'ended' ? s : null;
    },
    { timeoutMs: 3_000 + 2_000, intervalMs: 50, what: 'the crashed interview to end' },
  );
}

test('killed browser -> "Previous session detected" -> clear & continue takes over', { timeout: 90_000 }, async () => {
  const X = await browser('interview-x');
  const px = await X.newPage(pageUrl());
  const first = await startInterview(px);
  assert.equal(first.state, 'live');
  assert.equal((await srv.session(first.sessionId)).status, 'active');

  // a second browser is already on the page when the first one crashes
  const Y = await browser('interview-y');
  const py = await Y.newPage(pageUrl());
  X.kill();
  const second = await startInterview(py);
  assert.equal(second.state, 'conflict', 'the crashed session still blocks a new one right after the crash');
  assert.equal(second.blocking, first.sessionId);
  await py.getByRole('heading', { name: 'Previous session detected' }).waitFor();
  await py.screenshot({ path: join(ARTIFACTS, 'interview-conflict.png'), fullPage: true });

  await py.getByRole('button', { name: 'Clear previous session & continue' }).click();
  await py.waitForFunction(() => window.__demo.state === 'live', null, { timeout: 10_000 });
  const newId = await py.evaluate(() => window.__demo.sessionId);
  assert.notEqual(newId, first.sessionId);
  const old = await srv.session(first.sessionId);
  assert.equal(old.status, 'ended');
  assert.equal(old.end_reason, 'taken_over');
  assert.equal((await srv.session(newId)).status, 'active');
  await py.getByRole('heading', { name: 'Interview in progress' }).waitFor();

  // now crash this one and wait: the server ends it by itself (disconnect_grace 3 s)
  const t0 = Date.now();
  Y.kill();
  const ended = await waitFor(
    async () => {
      const s = await srv.session(newId);
      return s.status === 'ended' ? s : null;
    },
    { timeoutMs: 3_000 + 1_000, intervalMs: 50, what: 'the crashed interview to end' },
  );
  assert.equal(ended.end_reason, 'disconnected');
  assert.ok(Date.parse(ended.ended_at) - t0 <= 4_000);

  // coming back later: no conflict any more; the ended interview may be
  // continued, or a new one started
  const Z = await browser('interview-z');
  const pz = await Z.newPage(pageUrl());
  const offer = await startInterview(pz);
  assert.equal(offer.state, 'continue');
  assert.equal(offer.revivable, newId);
  await pz.getByRole('button', { name: 'Start a new one' }).click();
  await pz.waitForFunction(() => window.__demo.state === 'live', null, { timeout: 10_000 });
  const third = await pz.evaluate(() => ({ state: window.__demo.state, sessionId: window.__demo.sessionId }));
  assert.notEqual(third.sessionId, newId);

  // closing the tab ends it at once with the beacon
  await pz.close();
  const closed = await waitFor(
    async () => {
      const s = await srv.session(third.sessionId);
      return s.status === 'ended' ? s : null;
    },
    { timeoutMs: 2_000, intervalMs: 50, what: 'the closed tab to end its interview' },
  );
  assert.equal(closed.end_reason, 'closed');
});

test('crashed browser, interview ended disconnected -> "Continue your interview" revives the same session; a refused revive starts a new one', { timeout: 90_000 }, async () => {
  const who = `rev-${Math.random().toString(36).slice(2, 8)}`;
  const url = `${srv.url}/demo/interview?user=${who}`;
  const A = await browser('interview-revive-a');
  const first = await startInterview(await A.newPage(url));
  assert.equal(first.state, 'live');
  const ended = await crashedAndEnded(srv, A, first.sessionId);
  assert.equal(ended.end_reason, 'disconnected');

  // the user comes back (another browser: the offer comes from the server's record)
  const B = await browser('interview-revive-b');
  const pb = await B.newPage(url);
  const offer = await startInterview(pb);
  assert.equal(offer.state, 'continue');
  assert.equal(offer.revivable, first.sessionId);
  await pb.getByRole('heading', { name: 'Your interview was interrupted' }).waitFor();
  await pb.screenshot({ path: join(ARTIFACTS, 'interview-continue.png'), fullPage: true });
  await pb.getByRole('button', { name: 'Continue your interview' }).click();
  await pb.waitForFunction(() => window.__demo.state === 'live', null, { timeout: 10_000 });
  assert.equal(await pb.evaluate(() => window.__demo.sessionId), first.sessionId, 'the same session');
  const revived = await srv.session(first.sessionId);
  assert.equal(revived.status, 'active');
  assert.equal(revived.end_reason, null);
  assert.equal(revived.created_at, ended.created_at);
  await pb.getByText('Welcome back').waitFor();
  // the page keeps it alive: its WebSocket is open and heartbeats flow
  await pb.waitForFunction(() => window.__demo.client.connectionState === 'open', null, { timeout: 10_000 });

  // crash again; this time the session is ended for good before the user
  // clicks: the server refuses the revive (409) and the page starts fresh
  const second = await crashedAndEnded(srv, B, first.sessionId);
  assert.equal(second.end_reason, 'disconnected');
  const C = await browser('interview-revive-c');
  const pc = await C.newPage(url);
  assert.equal((await startInterview(pc)).state, 'continue');
  assert.equal((await srv.api('POST', `/v1/sessions/${first.sessionId}/revive`)).status, 200);
  assert.equal((await srv.api('POST', `/v1/sessions/${first.sessionId}/end`, {})).status, 200);
  await pc.getByRole('button', { name: 'Continue your interview' }).click();
  await pc.waitForFunction(() => window.__demo.state === 'live', null, { timeout: 10_000 });
  const fresh = await pc.evaluate(() => window.__demo.sessionId);
  assert.notEqual(fresh, first.sessionId);
  assert.equal((await srv.session(fresh)).status, 'active');
  await pc.getByText('Could not continue').waitFor();
});

test('no WebSocket: the SDK falls back to SSE + HTTP heartbeats; events still arrive', { timeout: 60_000 }, async () => {
  const W = await browser('interview-sse');
  const page = await W.newPage();
  // every WebSocket to /v1/ws is closed at once (a proxy that eats upgrades)
  let wsAttempts = 0;
  await page.routeWebSocket(/\/v1\/ws/, (ws) => {
    wsAttempts++;
    ws.close();
  });
  const other = `sse-${Math.random().toString(36).slice(2, 8)}`;
  await page.goto(`${srv.url}/demo/interview?user=${other}`);
  const r = await startInterview(page);
  assert.equal(r.state, 'live');
  await page.waitForFunction(() => window.__demo.client.activeTransport === 'sse', null, { timeout: 10_000 });
  assert.ok(wsAttempts >= 3, `tried the WebSocket first (${wsAttempts} attempts)`);
  await page.getByText('Live (SSE)').waitFor();

  // a heartbeat now goes over HTTP and moves last_seen_at
  const before = (await srv.session(r.sessionId)).last_seen_at;
  await sleepMs(20);
  await page.evaluate(() => window.__demo.session.heartbeat());
  const afterHb = await srv.session(r.sessionId);
  assert.ok(Date.parse(afterHb.last_seen_at) > Date.parse(before), 'heartbeat over HTTP recorded');

  // the session's end reaches the page over SSE
  const t0 = Date.now();
  const end = await srv.api('POST', `/v1/sessions/${r.sessionId}/end`, { reason: 'admin' });
  assert.equal(end.status, 200);
  await page.waitForFunction(() => window.__demo.endReason === 'admin', null, { timeout: 2_000 });
  assert.ok(Date.now() - t0 < 2_000);
  await page.getByText('Interview ended (admin).').waitFor();
});

const sleepMs = (ms) => new Promise((r) => setTimeout(r, ms));

test('back/forward cache: leaving ends the session (beacon); coming back starts a new one', { timeout: 60_000 }, async () => {
  const V = await browser('interview-bfcache', { bfcache: true });
  const other = `bf-${Math.random().toString(36).slice(2, 8)}`;
  const page = await V.newPage(`${srv.url}/demo/interview?user=${other}`);
  const r = await startInterview(page);
  assert.equal(r.state, 'live');

  await page.goto(`${srv.url}/demo`);
  const old = await waitFor(
    async () => {
      const s = await srv.session(r.sessionId);
      return s.status === 'ended' ? s : null;
    },
    { timeoutMs: 2_000, intervalMs: 50, what: 'pagehide beacon' },
  );
  assert.equal(old.end_reason, 'closed');

  // a bfcache restore fires no load event: wait for the commit only
  await page.goBack({ waitUntil: 'commit' });
  await page.waitForFunction((id) => window.__demo && window.__demo.restoredFrom === id, r.sessionId, { timeout: 10_000 });
  const { state, sessionId } = await page.evaluate(() => ({ state: window.__demo.state, sessionId: window.__demo.sessionId }));
  assert.equal(state, 'live');
  assert.notEqual(sessionId, r.sessionId);
  assert.equal((await srv.session(sessionId)).status, 'active');
  await page.getByText('Welcome back').waitFor();
});
