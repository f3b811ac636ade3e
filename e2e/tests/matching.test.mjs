// The speed-dating demo in real browsers: two users fill the form, get matched,
// connect WebRTC through Tether's signalling and see each other's (fake)
// camera. Then the two ways a browser goes away:
//  * a closed tab: pagehide -> sendBeacon -> the partner hears within 2 s;
//  * a killed browser process (no beacon, no close frame from JS): the
//    matching session ends `disconnected` within disconnect_grace + 1 s.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  startServer,
  launchBrowser,
  startDemoUser,
  demoState,
  waitFor,
  ARTIFACTS,
} from '../lib/harness.mjs';

let srv;
const browsers = [];

before(async () => {
  srv = await startServer('matching');
});
after(async () => {
  for (const b of browsers) await b.close();
  if (srv) await srv.stop();
});

async function browser(label) {
  const b = await launchBrowser(label);
  browsers.push(b);
  return b;
}

function rtcDiagnostics(page) {
  return page.evaluate(() => {
    const d = window.__demo;
    const c = d.call;
    return {
      user: d.userId,
      state: d.state,
      callId: d.callId,
      errors: d.errors,
      offerer: c && c.isOfferer,
      partner: c && c.partnerId,
      pc: d.pc && {
        conn: d.pc.connectionState,
        ice: d.pc.iceConnectionState,
        gathering: d.pc.iceGatheringState,
        signaling: d.pc.signalingState,
        local: !!d.pc.localDescription,
        remote: !!d.pc.remoteDescription,
      },
      events: d.events.slice(-12).map((e) => e.type + (e.reason ? ':' + e.reason : '')),
    };
  });
}

/** Both pages matched with each other, connected, each playing the other's video. */
async function expectConnected(pa, pb) {
  const callId = await waitFor(
    async () => {
      const [a, b] = await Promise.all([demoState(pa), demoState(pb)]);
      return a.callId && a.callId === b.callId ? a.callId : null;
    },
    { timeoutMs: 15_000, what: 'both users matched into the same call' },
  );
  for (const p of [pa, pb]) {
    try {
      await p.waitForFunction(() => window.__demo.pc && window.__demo.pc.connectionState === 'connected', null, {
        timeout: 20_000,
      });
    } catch (e) {
      const diag = await Promise.all([pa, pb].map(rtcDiagnostics));
      throw new Error(`${e.message}\n${JSON.stringify(diag, null, 1)}`);
    }
    await p.waitForFunction(
      () => {
        const v = document.getElementById('remote-video');
        return v && v.videoWidth > 0 && v.readyState >= 2 && !v.paused;
      },
      null,
      { timeout: 15_000 },
    );
  }
  return callId;
}

test('two browsers match, connect WebRTC, see each other; closing a tab tells the partner within 2 s', { timeout: 120_000 }, async () => {
  const A = await browser('alice');
  const B = await browser('bob');
  const pa = await A.newPage(srv.url + '/demo');
  const pb = await B.newPage(srv.url + '/demo');
  const [ua, ub] = await Promise.all([
    startDemoUser(pa, { name: 'Alice', age: 31, interests: 'hiking, jazz, chess', minAge: 25, maxAge: 40 }),
    startDemoUser(pb, { name: 'Bob', age: 33, interests: 'jazz, cooking, chess', minAge: 25, maxAge: 40 }),
  ]);
  assert.notEqual(ua.userId, ub.userId);

  const callId = await expectConnected(pa, pb);

  // the partner card and the call timer
  await pa.getByText('Bob, 33').waitFor();
  await pb.getByText('Alice, 31').waitFor();
  const score = await pa.locator('#partner-score').textContent();
  assert.match(score, /^\d+%$/);
  await pa.waitForFunction(() => /^[0-3]:\d\d$/.test(document.getElementById('countdown').textContent) && window.__demo.call.timerStarted, null, { timeout: 10_000 });
  const call = await srv.session(callId);
  assert.equal(call.status, 'active');
  assert.ok(call.expires_at, 'an active call has its max_duration deadline');

  // both SDKs reported their WebRTC set-up time (webrtc.connected)
  await waitFor(
    async () => {
      const res = await fetch(srv.url + '/metrics', { headers: { Authorization: 'Bearer e2e-admin-key' } });
      const m = /^tether_webrtc_setup_seconds_count(?:\{\})? (\d+)/m.exec(await res.text());
      return m && Number(m[1]) >= 2;
    },
    { timeoutMs: 5_000, what: 'two WebRTC set-up reports in /metrics' },
  );

  await pa.screenshot({ path: join(ARTIFACTS, 'demo.png'), fullPage: true });

  // close Bob's tab: the beacon ends his matching session, the call ends
  // partner_left, Alice hears it on her event stream
  const t0 = Date.now();
  await pb.close();
  await pa.waitForFunction(() => window.__demo.lastCallEndReason === 'partner_left', null, { timeout: 2_000 });
  const elapsed = Date.now() - t0;
  assert.ok(elapsed <= 2_000, `partner told after ${elapsed} ms`);
  const bobMatching = await srv.session(ub.matchingSessionId);
  assert.equal(bobMatching.status, 'ended');
  assert.equal(bobMatching.end_reason, 'closed', 'ended by the beacon');
  await pa.getByText('Your partner left the call.').first().waitFor();

  // the call had been active: Alice owes a decision
  await pa.getByRole('button', { name: 'Skip' }).waitFor();
  await pa.screenshot({ path: join(ARTIFACTS, 'demo-partner-left.png'), fullPage: true });
  await pa.getByRole('button', { name: 'Skip' }).click();
  await pa.waitForFunction(() => window.__demo.state === 'matching', null, { timeout: 5_000 });
  await pa.close();
});

test('a killed browser mid-call: its matching session ends disconnected within grace + 1 s, the partner is told', { timeout: 120_000 }, async () => {
  const kinds = await srv.api('GET', '/v1/kinds');
  const matchingKind = kinds.body.kinds.find((k) => k.name === 'matching');
  const graceMs = matchingKind.disconnect_grace_ms;
  assert.ok(graceMs > 0, 'matching has a disconnect_grace');

  const C = await browser('carol');
  const D = await browser('dave');
  const pc = await C.newPage(srv.url + '/demo');
  const pd = await D.newPage(srv.url + '/demo');
  // an age bracket nobody else from the first test fits
  const [uc] = await Promise.all([
    startDemoUser(pc, { name: 'Carol', age: 61, interests: 'sailing, jazz', minAge: 55, maxAge: 70 }),
    startDemoUser(pd, { name: 'Dave', age: 63, interests: 'sailing, birds', minAge: 55, maxAge: 70 }),
  ]);
  await expectConnected(pc, pd);

  const t0 = Date.now();
  C.kill();
  // Dave hears about it
  await pd.waitForFunction(() => window.__demo.lastCallEndReason === 'partner_left', null, {
    timeout: graceMs + 3_000,
  });
  const session = await waitFor(
    async () => {
      const s = await srv.session(uc.matchingSessionId);
      return s.status === 'ended' ? s : null;
    },
    { timeoutMs: graceMs + 1_000, intervalMs: 50, what: "Carol's matching session to end" },
  );
  const endedAfter = Date.parse(session.ended_at) - t0;
  assert.equal(session.end_reason, 'disconnected');
  assert.ok(endedAfter <= graceMs + 1_000, `ended ${endedAfter} ms after the kill (grace ${graceMs} ms)`);
  assert.ok(endedAfter >= graceMs - 250, `not before the grace (${endedAfter} ms)`);
  await pd.getByText('Your partner left the call.').first().waitFor();
});

test('End call, then both press Continue: a mutual match on both lists', { timeout: 120_000 }, async () => {
  const E = await browser('erin');
  const F = await browser('frank');
  const pe = await E.newPage(srv.url + '/demo');
  const pf = await F.newPage(srv.url + '/demo');
  await Promise.all([
    startDemoUser(pe, { name: 'Erin', age: 45, interests: 'climbing, films', minAge: 42, maxAge: 50 }),
    startDemoUser(pf, { name: 'Frank', age: 46, interests: 'films, tea', minAge: 42, maxAge: 50 }),
  ]);
  const callId = await expectConnected(pe, pf);

  await pe.getByRole('button', { name: 'End call' }).click();
  for (const p of [pe, pf]) {
    await p.waitForFunction(() => window.__demo.state === 'deciding', null, { timeout: 5_000 });
    await p.getByRole('heading', { name: 'How was it?' }).waitFor();
  }
  assert.equal(await pe.evaluate(() => window.__demo.lastCallEndReason), 'ended');
  assert.equal((await srv.session(callId)).end_reason, 'ended');

  await pe.getByRole('button', { name: 'Continue' }).click();
  await pf.getByRole('button', { name: 'Continue' }).click();
  await pe.locator('#matches-list li', { hasText: 'Frank' }).waitFor({ timeout: 5_000 });
  await pf.locator('#matches-list li', { hasText: 'Erin' }).waitFor({ timeout: 5_000 });
  for (const p of [pe, pf]) assert.equal(await p.evaluate(() => window.__demo.state), 'matching');
  await pe.screenshot({ path: join(ARTIFACTS, 'demo-mutual.png'), fullPage: true });
});
