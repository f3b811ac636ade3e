// Tether browser SDK — session lifecycle, live events, continuous matching and
// WebRTC calls over one Tether server.
//
// ES module, no dependencies, no build step. Safe to import from Node: nothing
// touches `window`, `document`, `navigator`, `WebSocket`, `EventSource` or
// `RTCPeerConnection` until a method that needs them is called (and all of
// them can be injected through `createClient` options).
//
// Served by the Tether server at /sdk/tether.js (its modules at /sdk/lib/);
// types in /sdk/tether.d.ts. This file is the public entry: it only gathers
// the exports of the modules that do the work, one concept each —
//   lib/client.js     TetherClient: HTTP, event routing, catching up after gaps
//   lib/transport.js  WebSocket + SSE fallback, reconnect with backoff
//   lib/endpoints.js  the server URLs (`urls`), failover and the retry rule
//   lib/page.js       pagehide beacon, bfcache restore, hidden-page ends
//   lib/session.js    SessionHandle (heartbeats, end, expiring, revive, restart), Conflict
//   lib/call.js       Call: WebRTC with perfect negotiation over Tether signalling
//   lib/vocabulary.js event types and live statuses of the wire
//   lib/http.js, lib/errors.js, lib/emitter.js, lib/util.js  the small parts
//
//   import { createClient } from '/sdk/tether.js';
//   const tether = createClient({ getToken: async () => myJwt });
//   const s = await tether.startSession('interview');
//   if (s.conflict) { /* show "Previous session detected" */ await s.takeover(); }

import { createClient } from './lib/client.js';
import { TetherError } from './lib/errors.js';
import { fetchDemoToken } from './lib/http.js';
import { backoffDelay, decodeJwtPayload, heartbeatIntervalFor, isOfferer } from './lib/util.js';

export const VERSION = '0.1.0';

export { Call } from './lib/call.js';
export { createClient, TetherClient } from './lib/client.js';
export { TetherError } from './lib/errors.js';
export { fetchDemoToken } from './lib/http.js';
export { Conflict, SessionHandle } from './lib/session.js';
export { backoffDelay, decodeJwtPayload, heartbeatIntervalFor, isOfferer } from './lib/util.js';
export { EVENT_TYPES } from './lib/vocabulary.js';

export default { createClient, fetchDemoToken, backoffDelay, heartbeatIntervalFor, isOfferer, decodeJwtPayload, TetherError, VERSION };
