// The wire's vocabulary as the SDK uses it: the event types the server
// publishes and the session statuses that count as live.
//
// These mirror the server's own enums (`EventType`, `Status` in
// /openapi.json); e2e/tests/vocabulary.test.mjs checks them — and the unions
// in tether.d.ts — against a running server, so a new or renamed word fails a
// test instead of being silently ignored by browsers.

/** Event types the server publishes (used to subscribe on an EventSource). */
export const EVENT_TYPES = Object.freeze([
  'session.started',
  'session.activated',
  'session.completing',
  'session.ended',
  'session.expiring',
  'session.revived',
  'participant.joined',
  'participant.left',
  'match.found',
  'match.mutual',
  'call.signal',
  'stream.gap',
]);

/** The statuses before `ended`. */
const LIVE_STATUSES = new Set(['waiting', 'active', 'completing']);

/** Whether a session snapshot is still live (not ended). */
export function isLive(session) {
  return !!session && LIVE_STATUSES.has(session.status) && !session.ended_at;
}
