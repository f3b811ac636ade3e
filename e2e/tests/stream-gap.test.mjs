// stream.gap against a real server, with the SDK in Node on its SSE transport:
// a client that was offline while its session ended, and while enough else
// happened to push that end out of the server's resume log (32 MiB), resumes
// with its last event id. The server must first say which ids it skipped; the
// SDK must tell the app and end the session it tracks with the real reason.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createClient, fetchDemoToken } from '../../web/sdk/tether.js';
import { startServer, waitFor } from '../lib/harness.mjs';
import { NodeEventSource } from '../lib/node-event-source.mjs';

let server;
after(async () => {
  await server?.stop();
});

/** Bytes of session JSON the flood puts into the log: past the 32 MiB resume log, with room to spare. */
const FLOOD_BYTES = 34 * 1024 * 1024;
const METADATA_CHARS = 60_000; // under the 64 KiB body limit

/** Sessions of other users, each started and ended: two large events apiece. */
async function flood(server) {
  const metadata = { padding: 'x'.repeat(METADATA_CHARS) };
  const sessions = Math.ceil(FLOOD_BYTES / (2 * METADATA_CHARS));
  const one = async (i) => {
    const r = await server.api('POST', '/v1/sessions', { kind: 'e2e_short', user_id: `flood-${i}`, metadata });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const id = (r.body.session ?? r.body).id;
    const e = await server.api('POST', `/v1/sessions/${id}/end`, {});
    assert.equal(e.status, 200, JSON.stringify(e.body));
  };
  for (let i = 0; i < sessions; i += 16) {
    await Promise.all(Array.from({ length: Math.min(16, sessions - i) }, (_, k) => one(i + k)));
  }
}

test('resuming from before the resume log: stream.gap first, then the SDK ends the session with its real reason', async () => {
  server = await startServer('stream-gap');
  const token = await fetchDemoToken({ baseUrl: server.url, userId: 'gap-ada' });
  const gaps = [];
  const seen = [];
  const client = createClient({
    baseUrl: server.url,
    getToken: () => token,
    transport: 'sse',
    EventSource: NodeEventSource,
    lifecycle: false,
    backoff: { baseMs: 1, capMs: 1 },
    onGap: (g) => gaps.push(g),
  });
  client.on('*', (ev) => seen.push(ev));
  try {
    const h = await client.startSession('interview', { heartbeat: false });
    const started = await waitFor(() => seen.find((e) => e.type === 'session.started' && e.session.id === h.id), {
      what: 'session.started on the SSE stream',
    });
    const lastSeen = Math.max(...seen.filter((e) => e.id != null).map((e) => e.id));
    assert.ok(lastSeen >= started.id);

    // offline: the SDK's reconnection waits at the gate
    let release;
    NodeEventSource.gate = new Promise((r) => (release = r));
    NodeEventSource.instances.at(-1).drop();
    await waitFor(() => client.connectionState === 'connecting', { what: 'the client to notice' });

    const end = await server.api('POST', `/v1/sessions/${h.id}/end`, { reason: 'admin' });
    assert.equal(end.status, 200);
    await flood(server);

    seen.length = 0;
    const ended = new Promise((r) => h.on('ended', r));
    NodeEventSource.gate = null;
    release();
    const resumed = await waitFor(() => NodeEventSource.instances.length >= 2 && NodeEventSource.instances.at(-1), {
      what: 'the SDK to reconnect',
    });
    assert.match(resumed.url, new RegExp(`[?&]last_event_id=${lastSeen}(&|$)`), 'resumes after the last event seen');

    await waitFor(() => gaps.length > 0, { timeoutMs: 15_000, what: 'a stream.gap notice' });
    // (the SDK's own catch-up on reopening may deliver a `resynced` end first:
    // that one is not from the stream, whose order is what is checked here)
    const streamed = seen.filter((e) => !e.resynced);
    assert.equal(streamed[0].type, 'stream.gap', 'the gap notice comes before anything else on the resumed stream');
    assert.equal(gaps[0].from, lastSeen + 1, 'the skipped range starts after the last event seen');
    assert.ok(gaps[0].to >= gaps[0].from, 'and is not empty');
    assert.equal(await ended, 'admin', 'the session that ended while offline ends with its real reason');
    assert.equal(h.endReason, 'admin');
  } finally {
    NodeEventSource.gate = null;
    client.close();
  }
});
