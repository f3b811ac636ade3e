// Tether browser SDK — session lifecycle, live events, continuous matching and
// WebRTC calls over one Tether server.
//
// ES module, no dependencies, no build step. Safe to import from Node: nothing
// touches `window`, `document`, `navigator`, `WebSocket`, `EventSource` or
// `RTCPeerConnection` until a method that needs them is called (and all of
// them can be injected through `createClient` options).
//
// Served by the Tether server at /sdk/tether.js; types in /sdk/tether.d.ts.
//
//   import { createClient } from '/sdk/tether.js';
//   const tether = createClient({ getToken: async () => myJwt });
//   const s = await tether.startSession('interview');
//   if (s.conflict) { /* show "Previous session detected" */ await s.takeover(); }
//
// Design notes (the browser side of the problems Tether exists for):
// * One WebSocket carries events (server -> client) and heartbeats/signals
//   (client -> server). It reconnects with exponential backoff and full jitter
//   (first retry within 250 ms, cap 10 s) because kinds with `disconnect_grace`
//   (matching: 5 s) end the session when the owner's last socket stays closed.
//   After repeated failures to open it, the SDK bridges with Server-Sent Events
//   and HTTP heartbeats, while still retrying the WebSocket in the background.
// * `beforeunload` is not reliable (mobile, bfcache, crashes): the SDK ends
//   sessions on `pagehide` with `navigator.sendBeacon`, which cannot carry an
//   Authorization header — so the token goes in the body as text/plain
//   `{"token":"…"}`. A crash sends nothing at all: that case is the server's
//   job (disconnect_grace / idle_timeout); the SDK keeps heartbeats flowing so
//   the idle timeout can be short.
// * A page restored from the back/forward cache (`pageshow` with `persisted`)
//   re-checks its sessions and starts new ones for those that ended.

/** @typedef {import('./tether.d.ts').Session} Session */
/** @typedef {import('./tether.d.ts').TetherEvent} TetherEvent */
/** @typedef {import('./tether.d.ts').KindInfo} KindInfo */
/** @typedef {import('./tether.d.ts').Match} Match */
/** @typedef {import('./tether.d.ts').Signal} Signal */
/** @typedef {import('./tether.d.ts').ClientOptions} ClientOptions */
/** @typedef {import('./tether.d.ts').SessionOptions} SessionOptions */
/** @typedef {import('./tether.d.ts').MatchingPrefs} MatchingPrefs */
/** @typedef {import('./tether.d.ts').ConnectCallOptions} ConnectCallOptions */

export const VERSION = '0.1.0';

/** Event types the server publishes (used to subscribe on an EventSource). */
export const EVENT_TYPES = Object.freeze([
  'session.started',
  'session.activated',
  'session.completing',
  'session.ended',
  'session.updated',
  'participant.joined',
  'participant.left',
  'match.found',
  'match.mutual',
  'call.signal',
]);

const LIVE_STATUSES = new Set(['waiting', 'active', 'completing']);

// ---------------------------------------------------------------------------
// Small pure helpers (exported for tests and for apps that want them)
// ---------------------------------------------------------------------------

/**
 * Exponential backoff with full jitter: a uniformly random delay in
 * [0, min(capMs, baseMs * 2^attempt)).
 * @param {number} attempt 0 for the first retry
 * @param {{baseMs?: number, capMs?: number, random?: () => number}} [o]
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, o = {}) {
  const baseMs = o.baseMs ?? 250;
  const capMs = o.capMs ?? 10_000;
  const random = o.random ?? Math.random;
  const ceiling = Math.min(capMs, baseMs * Math.pow(2, Math.max(0, attempt)));
  return Math.floor(random() * ceiling);
}

/**
 * Heartbeat interval for a kind: a third of its idle timeout, at least 1 s;
 * 20 s for a kind without an idle timeout; 10 s when the kind is unknown.
 * @param {KindInfo | null | undefined} kind
 * @returns {number} milliseconds
 */
export function heartbeatIntervalFor(kind) {
  if (!kind) return 10_000;
  const idle = kind.idle_timeout_ms;
  if (idle == null || !(idle > 0)) return 20_000;
  return Math.max(1_000, Math.floor(idle / 3));
}

/**
 * Decode a JWT's payload without verifying it (the server verifies).
 * @param {string} token
 * @returns {Record<string, any> | null}
 */
export function decodeJwtPayload(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    let b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    let json;
    if (typeof globalThis.atob === 'function') {
      const bin = globalThis.atob(b64);
      const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
      json = new TextDecoder().decode(bytes);
    } else {
      // Node < 16 fallback
      json = /** @type {any} */ (globalThis).Buffer.from(b64, 'base64').toString('utf8');
    }
    return JSON.parse(json);
  } catch {
    return null;
  }
}

/**
 * Which side of a call sends the first offer: the participant whose user_id
 * sorts lower (plain string comparison by code unit — byte order for ASCII
 * ids). The other side is the "polite" peer of perfect negotiation.
 * @param {string} myUserId
 * @param {string} partnerUserId
 */
export function isOfferer(myUserId, partnerUserId) {
  return String(myUserId) < String(partnerUserId);
}

/**
 * Ask a demo server for a user token (`[auth].demo` must be on).
 * @param {{baseUrl?: string, userId: string, fetch?: typeof fetch}} o
 * @returns {Promise<string>}
 */
export async function fetchDemoToken(o) {
  const baseUrl = normalizeBase(o.baseUrl);
  const f = o.fetch ?? globalThis.fetch.bind(globalThis);
  const res = await f(baseUrl + '/v1/demo/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user_id: o.userId }),
  });
  const body = await readBody(res);
  if (!res.ok) throw new TetherError(res.status, body);
  return body.token;
}

/** Error for a non-2xx answer; carries the RFC 9457 problem document. */
export class TetherError extends Error {
  /**
   * @param {number} status
   * @param {any} problem
   * @param {string} [message]
   */
  constructor(status, problem, message) {
    const p = problem && typeof problem === 'object' ? problem : {};
    super(message ?? (p.detail || p.title || `HTTP ${status}`));
    this.name = 'TetherError';
    /** HTTP status (0 for a network failure) */
    this.status = status;
    /** the problem+json body, if any */
    this.problem = p;
    this.detail = p.detail ?? null;
  }
}

function normalizeBase(baseUrl) {
  let b = baseUrl;
  if (b == null) {
    const loc = globalThis.location;
    if (!loc || !loc.origin || loc.origin === 'null') {
      throw new Error('tether: baseUrl is required outside a browser page');
    }
    b = loc.origin;
  }
  return String(b).replace(/\/+$/, '');
}

async function readBody(res) {
  if (res.status === 204) return null;
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { detail: text };
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._h = new Map();
  }
  on(type, fn) {
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    let s = this._h.get(type);
    if (!s) this._h.set(type, (s = new Set()));
    s.add(fn);
    return () => this.off(type, fn);
  }
  once(type, fn) {
    const off = this.on(type, (...a) => {
      off();
      fn(...a);
    });
    return off;
  }
  off(type, fn) {
    const s = this._h.get(type);
    if (s) s.delete(fn);
  }
  emit(type, ...args) {
    const s = this._h.get(type);
    if (!s) return;
    for (const fn of [...s]) {
      try {
        fn(...args);
      } catch (e) {
        // a listener's bug must not break the SDK
        if (globalThis.console) console.error('tether listener error', e);
      }
    }
  }
  clear() {
    this._h.clear();
  }
}

/** A bounded set of recently seen keys (insertion order eviction). */
class RecentSet {
  constructor(max = 1000) {
    this.max = max;
    this.s = new Set();
  }
  has(k) {
    return this.s.has(k);
  }
  add(k) {
    this.s.add(k);
    if (this.s.size > this.max) this.s.delete(this.s.values().next().value);
  }
}

function isLive(session) {
  return !!session && LIVE_STATUSES.has(session.status) && !session.ended_at;
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/**
 * Create a Tether client.
 * @param {ClientOptions} options
 * @returns {TetherClient}
 */
export function createClient(options) {
  return new TetherClient(options);
}

export class TetherClient {
  /** @param {ClientOptions} options */
  constructor(options = /** @type {any} */ ({})) {
    if (typeof options.getToken !== 'function') {
      throw new TypeError('createClient: getToken must be a function returning a token');
    }
    this.baseUrl = normalizeBase(options.baseUrl);
    this._getToken = options.getToken;
    this._fetch = options.fetch ?? ((...a) => globalThis.fetch(...a));
    this._WS = options.WebSocket;
    this._ES = options.EventSource;
    this._RTC = options.RTCPeerConnection;
    /** @type {'auto'|'ws'|'sse'|'none'} */
    this.transport = options.transport ?? 'auto';
    this.wsFailuresBeforeFallback = options.wsFailuresBeforeFallback ?? 3;
    this.backoff = { baseMs: 250, capMs: 10_000, ...(options.backoff || {}) };
    this.pingIntervalMs = options.pingIntervalMs ?? 20_000;
    this.lifecycle = options.lifecycle ?? true;
    this.debug = !!options.debug;
    this._userId = options.userId ?? null;

    this._em = new Emitter();
    this._seenEvents = new RecentSet(2000);
    /** @type {Map<string, SessionHandle>} */
    this._sessions = new Map();
    /** @type {Map<string, Match>} call_id -> match */
    this._matches = new Map();
    this._announcedMatches = new RecentSet(500);
    /** @type {Map<string, Signal[]>} call_id -> signals received before connectCall */
    this._signalBuffers = new Map();
    /** @type {Map<string, Call>} */
    this._calls = new Map();
    /** @type {Map<string, KindInfo> | null} */
    this._kinds = null;
    this._kindsPromise = null;
    this._lastToken = null;
    /** @type {number | null} highest numeric event id seen */
    this._lastEventId = null;

    // connection state
    this.connectionState = 'idle'; // idle | connecting | open | closed
    this.activeTransport = null; // 'ws' | 'sse' | null
    this._ws = null;
    this._wsOpen = false;
    this._wsAttempt = 0;
    this._wsFailures = 0;
    this._wsTimer = null;
    this._pingTimer = null;
    this._lastRx = 0;
    this._es = null;
    this._esOpen = false;
    this._esAttempt = 0;
    this._esTimer = null;
    this._started = false;
    this._closed = false;
    this._suspended = false; // page hidden in bfcache
    this._openWaiters = [];
    this._lifecycleInstalled = false;
    this._hiddenTimers = new Map();
  }

  // ----- identity & HTTP -------------------------------------------------

  /** The current token (calls getToken). */
  async token() {
    const t = await this._getToken();
    if (typeof t !== 'string' || !t) throw new Error('tether: getToken returned no token');
    this._lastToken = t;
    if (!this._userId) {
      const p = decodeJwtPayload(t);
      if (p && p.sub) this._userId = String(p.sub);
    }
    return t;
  }

  /** The user id (option `userId`, else the `sub` of the last token); null before the first token. */
  get userId() {
    if (!this._userId && this._lastToken) {
      const p = decodeJwtPayload(this._lastToken);
      if (p && p.sub) this._userId = String(p.sub);
    }
    return this._userId;
  }

  /**
   * An authenticated JSON request to the server.
   * @param {string} method
   * @param {string} path e.g. "/v1/sessions"
   * @param {any} [body]
   * @param {{keepalive?: boolean, signal?: AbortSignal}} [o]
   */
  async request(method, path, body, o = {}) {
    const token = await this.token();
    /** @type {Record<string,string>} */
    const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json' };
    const init = { method, headers, keepalive: !!o.keepalive, signal: o.signal };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await this._fetch(this.baseUrl + path, init);
    } catch (e) {
      throw new TetherError(0, { title: 'Network error', detail: String(e && e.message ? e.message : e) });
    }
    const data = await readBody(res);
    if (!res.ok) throw new TetherError(res.status, data);
    return data;
  }

  /** Kinds known to the server (cached). @returns {Promise<Map<string, KindInfo>>} */
  async kinds(refresh = false) {
    if (this._kinds && !refresh) return this._kinds;
    if (!this._kindsPromise || refresh) {
      this._kindsPromise = this.request('GET', '/v1/kinds')
        .then((r) => {
          const m = new Map();
          for (const k of (r && r.kinds) || []) m.set(k.name, k);
          this._kinds = m;
          return m;
        })
        .catch((e) => {
          this._kindsPromise = null;
          throw e;
        });
    }
    return this._kindsPromise;
  }

  async _kind(name) {
    try {
      return (await this.kinds()).get(name) ?? null;
    } catch (e) {
      this._log('kinds unavailable', e);
      return null;
    }
  }

  // ----- events ------------------------------------------------------------

  /**
   * Subscribe to server events by type ("session.ended", "match.found", …),
   * "*" for all of them, or SDK events: "connection" ({state, transport}),
   * "error". Opens the event connection if needed.
   * @param {string} type
   * @param {(...args: any[]) => void} fn
   * @returns {() => void} unsubscribe
   */
  on(type, fn) {
    const off = this._em.on(type, fn);
    if (type !== 'connection' && type !== 'error') this.connect();
    return off;
  }

  /** @param {string} type @param {Function} fn */
  off(type, fn) {
    this._em.off(type, /** @type {any} */ (fn));
  }

  /**
   * Called with (match, event) for every new match (deduplicated by call_id).
   * @param {(match: Match, ev: TetherEvent | null) => void} fn
   */
  onMatch(fn) {
    return this.on('match', fn);
  }

  /** Start the event connection (idempotent). */
  connect() {
    if (this._closed) return;
    if (this._started) return;
    this._started = true;
    this._installLifecycle();
    if (this.transport === 'none') return;
    if (this.transport === 'sse') this._sseConnect();
    else this._wsConnect();
  }

  /**
   * Resolve true once an event transport is open, false after timeoutMs.
   * @param {number} [timeoutMs]
   */
  ready(timeoutMs = 5000) {
    this.connect();
    if (this.connectionState === 'open' || this.transport === 'none') return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this._openWaiters = this._openWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = () => {
        clearTimeout(t);
        resolve(true);
      };
      this._openWaiters.push(done);
    });
  }

  /** Stop everything: heartbeats, calls, the event connection. Does not end sessions. */
  close() {
    this._closed = true;
    for (const h of this._sessions.values()) h._stopHeartbeats();
    for (const c of this._calls.values()) c.close();
    this._teardownTransports();
    this._setConnection('closed', null);
  }

  _log(...a) {
    if (this.debug && globalThis.console) console.debug('[tether]', ...a);
  }

  _setConnection(state, transport) {
    if (this.connectionState === state && this.activeTransport === transport) return;
    this.connectionState = state;
    this.activeTransport = transport;
    if (state === 'open') {
      const w = this._openWaiters;
      this._openWaiters = [];
      w.forEach((f) => f());
    }
    this._em.emit('connection', { state, transport });
  }

  _teardownTransports() {
    clearTimeout(this._wsTimer);
    clearTimeout(this._esTimer);
    clearInterval(this._pingTimer);
    this._wsTimer = this._esTimer = this._pingTimer = null;
    if (this._ws) {
      const ws = this._ws;
      this._ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000, 'client closing');
      } catch {}
    }
    this._wsOpen = false;
    this._closeSse();
  }

  _wsUrl(token) {
    const u = this.baseUrl.replace(/^http/i, 'ws');
    return `${u}/v1/ws?token=${encodeURIComponent(token)}`;
  }

  async _wsConnect() {
    if (this._closed || this._suspended || this._ws) return;
    const WS = this._WS ?? globalThis.WebSocket;
    if (!WS) {
      this._log('no WebSocket available; using SSE');
      this._sseConnect();
      return;
    }
    if (!this._esOpen) this._setConnection('connecting', null);
    let token;
    try {
      token = await this.token();
    } catch (e) {
      this._em.emit('error', e);
      this._wsScheduleReconnect(false);
      return;
    }
    if (this._closed || this._suspended || this._ws) return;
    let ws;
    try {
      ws = new WS(this._wsUrl(token));
    } catch (e) {
      this._wsScheduleReconnect(false);
      return;
    }
    this._ws = ws;
    // A socket counts as working once the server answered something on it
    // (we ping at once). One that opens and dies silently — a proxy eating
    // upgrades, an auth failure after the handshake — counts as a failure,
    // so repeated ones still lead to the SSE fallback.
    let healthy = false;
    const markHealthy = () => {
      if (healthy) return;
      healthy = true;
      this._wsAttempt = 0;
      this._wsFailures = 0;
      this._closeSse(); // the WebSocket is preferred
      this._setConnection('open', 'ws');
      this._catchUp();
    };
    ws.onopen = () => {
      this._wsOpen = true;
      this._lastRx = Date.now();
      this._wsSend({ type: 'ping' });
      if (!this._esOpen) this._setConnection('open', 'ws');
      this._startPing();
    };
    ws.onmessage = (m) => {
      this._lastRx = Date.now();
      markHealthy();
      let data;
      try {
        data = JSON.parse(typeof m.data === 'string' ? m.data : String(m.data));
      } catch {
        return;
      }
      this._onFrame(data);
    };
    ws.onerror = () => {
      /* onclose follows */
    };
    ws.onclose = () => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._wsOpen = false;
      clearInterval(this._pingTimer);
      this._pingTimer = null;
      if (!this._esOpen) this._setConnection('connecting', null);
      this._wsScheduleReconnect(healthy);
    };
  }

  _wsScheduleReconnect(wasHealthy) {
    if (this._closed || this._suspended) return;
    if (!wasHealthy) this._wsFailures++;
    const delay = backoffDelay(this._wsAttempt++, this.backoff);
    if (this.transport === 'auto' && this._wsFailures >= this.wsFailuresBeforeFallback && !this._es) {
      this._log('WebSocket failed', this._wsFailures, 'times; falling back to SSE');
      this._sseConnect();
    }
    clearTimeout(this._wsTimer);
    this._wsTimer = setTimeout(() => {
      this._wsTimer = null;
      this._wsConnect();
    }, delay);
  }

  _startPing() {
    clearInterval(this._pingTimer);
    this._pingTimer = setInterval(() => {
      const ws = this._ws;
      if (!ws || !this._wsOpen) return;
      if (Date.now() - this._lastRx > this.pingIntervalMs * 2.5) {
        // half-open connection: drop it and reconnect
        this._log('WebSocket silent; reconnecting');
        try {
          ws.close(4000, 'silent');
        } catch {}
        ws.onclose && ws.onclose(/** @type {any} */ ({}));
        return;
      }
      this._wsSend({ type: 'ping' });
    }, this.pingIntervalMs);
  }

  _wsSend(obj) {
    if (!this._ws || !this._wsOpen) return false;
    try {
      this._ws.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  async _sseConnect() {
    if (this._closed || this._suspended || this._es) return;
    const ES = this._ES ?? globalThis.EventSource;
    if (!ES) return;
    let token;
    try {
      token = await this.token();
    } catch (e) {
      this._em.emit('error', e);
      return;
    }
    if (this._closed || this._es || this._wsOpen) return;
    // resume after the last event seen on any transport (the server accepts
    // ?last_event_id= for clients that cannot set the Last-Event-ID header)
    const resume = this._lastEventId != null ? `&last_event_id=${this._lastEventId}` : '';
    const es = new ES(`${this.baseUrl}/v1/events?token=${encodeURIComponent(token)}${resume}`);
    this._es = es;
    const onEvent = (m) => {
      let data;
      try {
        data = JSON.parse(m.data);
      } catch {
        return;
      }
      if (data && !data.type && m.type && m.type !== 'message') data.type = m.type;
      if (data && data.id == null && m.lastEventId) data.id = m.lastEventId;
      this._onFrame(data);
    };
    es.onmessage = onEvent;
    for (const t of EVENT_TYPES) es.addEventListener(t, onEvent);
    es.onopen = () => {
      this._esOpen = true;
      this._esAttempt = 0;
      if (!this._wsOpen) {
        this._setConnection('open', 'sse');
        this._catchUp();
      }
    };
    es.onerror = () => {
      if (this._es !== es) return;
      if (es.readyState === 2 /* CLOSED */) {
        this._es = null;
        this._esOpen = false;
        if (!this._wsOpen) this._setConnection('connecting', null);
        clearTimeout(this._esTimer);
        this._esTimer = setTimeout(() => this._sseConnect(), backoffDelay(this._esAttempt++, this.backoff));
      } else {
        // EventSource reconnects by itself (with Last-Event-ID)
        this._esOpen = false;
        if (!this._wsOpen) this._setConnection('connecting', null);
      }
    };
  }

  _closeSse() {
    clearTimeout(this._esTimer);
    this._esTimer = null;
    if (this._es) {
      try {
        this._es.close();
      } catch {}
    }
    this._es = null;
    this._esOpen = false;
  }

  /** After (re)connecting: find out what we may have missed. */
  _catchUp() {
    for (const h of this._sessions.values()) {
      if (h._beaconed) continue; // a bfcache restore is dealing with it
      if (!h.ended) h.refresh().catch(() => {});
      if (!h.ended && h.kind === 'matching') h._checkNextMatch().catch(() => {});
    }
    for (const c of this._calls.values()) {
      if (!c.ended) {
        c._drainHttp().catch(() => {});
        c._poll().catch(() => {});
      }
    }
  }

  /** A frame from the WebSocket or an SSE event. */
  _onFrame(data) {
    if (!data || typeof data !== 'object') return;
    if (data.type === 'pong') return;
    if (data.type === 'error') {
      this._onServerError(data);
      return;
    }
    this._dispatch(data);
  }

  _onServerError(err) {
    const sid = err.session_id;
    const h = sid ? this._sessions.get(sid) : null;
    if (h && (err.status === 410 || err.status === 404)) {
      h._markEnded(err.end_reason ?? (err.status === 404 ? 'gone' : 'ended'), null);
    }
    const cid = err.call_id ?? sid;
    const c = cid ? this._calls.get(cid) : null;
    if (c && err.status === 410) c._end(err.end_reason ?? 'partner_left');
    this._em.emit('error', new TetherError(err.status ?? 0, err));
  }

  /** @param {TetherEvent} ev */
  _dispatch(ev) {
    if (ev.id != null) {
      const key = String(ev.id);
      if (/^\d+$/.test(key) && (this._lastEventId == null || Number(key) > this._lastEventId)) {
        this._lastEventId = Number(key);
      }
      if (this._seenEvents.has(key)) return;
      this._seenEvents.add(key);
    }
    const sid = ev.session && ev.session.id;
    if (ev.type === 'call.signal') {
      const callId = ev.call_id ?? sid;
      if (callId && ev.signal) this._routeSignal(callId, ev.signal);
    } else if (ev.type === 'match.found' && ev.match) {
      this._announceMatch(ev.match, ev);
    }
    if (sid) {
      const h = this._sessions.get(sid);
      if (h) h._onEvent(ev);
      const c = this._calls.get(sid);
      if (c) c._onSessionEvent(ev);
    }
    this._em.emit(ev.type, ev);
    this._em.emit('*', ev);
  }

  _announceMatch(match, ev) {
    if (!match || !match.call_id) return;
    this._matches.set(match.call_id, match);
    if (this._announcedMatches.has(match.call_id)) return;
    this._announcedMatches.add(match.call_id);
    this._em.emit('match', match, ev ?? null);
  }

  _routeSignal(callId, signal) {
    if (signal.from && this.userId && signal.from === this.userId) return;
    const c = this._calls.get(callId);
    if (c) {
      c._receive(signal);
      return;
    }
    let buf = this._signalBuffers.get(callId);
    if (!buf) {
      this._signalBuffers.set(callId, (buf = []));
      if (this._signalBuffers.size > 20) {
        this._signalBuffers.delete(this._signalBuffers.keys().next().value);
      }
    }
    if (buf.length < 500) buf.push(signal);
  }

  // ----- sessions ------------------------------------------------------------

  /**
   * Start a session of `kind`. Resolves to a SessionHandle, or — for a kind
   * with per_user="reject" that already has a live session for this user —
   * to `{conflict: true, blockingSession, takeover()}`.
   * @param {string} kind
   * @param {SessionOptions} [opts]
   * @returns {Promise<SessionHandle | Conflict>}
   */
  async startSession(kind, opts = {}) {
    this.connect();
    // make sure the event connection is up before the session exists, so
    // its events (and the disconnect-grace presence) are not missed
    await this.ready(opts.connectTimeoutMs ?? 3000);
    const body = { kind };
    if (opts.metadata !== undefined) body.metadata = opts.metadata;
    if (opts.parentId) body.parent_id = opts.parentId;
    if (opts.userId) body.user_id = opts.userId;
    if (opts.onConflict === 'takeover') body.on_conflict = 'takeover';
    let res;
    try {
      res = await this.request('POST', '/v1/sessions', body);
    } catch (e) {
      if (e instanceof TetherError && e.status === 409 && e.problem && e.problem.blocking_session) {
        return new Conflict(this, kind, opts, e.problem.blocking_session, e);
      }
      throw e;
    }
    const session = res && res.session ? res.session : res;
    const handle = new SessionHandle(this, session, opts, () => this._restartSession(kind, opts));
    handle.superseded = (res && res.superseded) || [];
    await handle._begin();
    return handle;
  }

  async _restartSession(kind, opts) {
    const r = await this.startSession(kind, { ...opts, onConflict: 'takeover' });
    if (r instanceof Conflict) throw new Error('unexpected conflict');
    r._detach();
    return r.session;
  }

  /**
   * Track an existing session (e.g. one whose id the app kept): heartbeats,
   * events, end on pagehide. Resolves null if it is not live.
   * @param {string} id
   * @param {SessionOptions} [opts]
   */
  async resumeSession(id, opts = {}) {
    this.connect();
    const session = await this.getSession(id);
    if (!isLive(session)) return null;
    const handle = new SessionHandle(this, session, opts, null);
    await handle._begin();
    return handle;
  }

  /** @param {string} id @returns {Promise<Session>} */
  getSession(id) {
    return this.request('GET', `/v1/sessions/${encodeURIComponent(id)}`);
  }

  /**
   * @param {{kind?: string, status?: string, user_id?: string, limit?: number, cursor?: string}} [q]
   * @returns {Promise<{sessions: Session[], next_cursor: string | null}>}
   */
  listSessions(q = {}) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v != null && v !== '') p.set(k, String(v));
    const qs = p.toString();
    return this.request('GET', '/v1/sessions' + (qs ? '?' + qs : ''));
  }

  /** End any session by id (idempotent). @param {string} id @param {string} [reason] */
  endSession(id, reason) {
    return this.request('POST', `/v1/sessions/${encodeURIComponent(id)}/end`, reason ? { reason } : {});
  }

  /** @param {string} sessionId */
  async _heartbeat(sessionId) {
    if (this._wsSend({ type: 'heartbeat', session_id: sessionId })) return null;
    return this.request('POST', `/v1/sessions/${encodeURIComponent(sessionId)}/heartbeat`);
  }

  /**
   * End a session with navigator.sendBeacon (works while the page unloads).
   * Falls back to fetch({keepalive:true}). Returns whether it was queued.
   * @param {string} sessionId
   */
  beacon(sessionId) {
    const token = this._lastToken;
    if (!token) return false;
    const url = `${this.baseUrl}/v1/sessions/${encodeURIComponent(sessionId)}/beacon`;
    const payload = JSON.stringify({ token });
    const nav = globalThis.navigator;
    try {
      if (nav && typeof nav.sendBeacon === 'function') {
        const blob = new Blob([payload], { type: 'text/plain' });
        if (nav.sendBeacon(url, blob)) return true;
      }
    } catch {}
    try {
      this._fetch(url, {
        method: 'POST',
        keepalive: true,
        headers: { 'Content-Type': 'text/plain' },
        body: payload,
      }).catch(() => {});
      return true;
    } catch {
      return false;
    }
  }

  // ----- page lifecycle --------------------------------------------------------

  _installLifecycle() {
    if (this._lifecycleInstalled || !this.lifecycle) return;
    const w = globalThis.window;
    const d = globalThis.document;
    if (!w || typeof w.addEventListener !== 'function') return;
    this._lifecycleInstalled = true;
    w.addEventListener('pagehide', (e) => this._onPageHide(e));
    w.addEventListener('pageshow', (e) => this._onPageShow(e));
    if (d && typeof d.addEventListener === 'function') {
      d.addEventListener('visibilitychange', () => this._onVisibility(d.visibilityState));
    }
  }

  _onPageHide(e) {
    for (const h of this._sessions.values()) {
      if (h.ended || h.opts.endOnPageHide === false) continue;
      h._stopHeartbeats();
      h._beaconed = true;
      this.beacon(h.id);
    }
    for (const c of this._calls.values()) c.close();
    // Close the socket too: a page with an open WebSocket is not eligible for
    // the back/forward cache, and the server would otherwise start the grace.
    this._suspended = true;
    this._teardownTransports();
    this._setConnection('closed', null);
    void e;
  }

  async _onPageShow(e) {
    if (!this._suspended) return;
    this._suspended = false;
    if (!e || !e.persisted) return; // a fresh load has a fresh client anyway
    if (this._started) {
      this._started = false;
      this.connect();
    }
    for (const h of [...this._sessions.values()]) {
      if (h.ended && !h._beaconed) continue;
      h._restoreAfterHide('pageshow').catch((err) => this._em.emit('error', err));
    }
  }

  _onVisibility(state) {
    if (state === 'hidden') {
      for (const h of this._sessions.values()) {
        const ms = h.opts.endWhenHiddenMs;
        if (h.ended || ms == null || ms < 0 || this._hiddenTimers.has(h)) continue;
        this._hiddenTimers.set(
          h,
          setTimeout(() => {
            this._hiddenTimers.delete(h);
            const d = globalThis.document;
            if (d && d.visibilityState !== 'hidden') return;
            h._endedByHidden = true;
            h.end('page_hidden').catch(() => {
              h._beaconed = true;
              this.beacon(h.id);
            });
          }, ms),
        );
      }
    } else if (state === 'visible') {
      for (const t of this._hiddenTimers.values()) clearTimeout(t);
      this._hiddenTimers.clear();
      for (const h of [...this._sessions.values()]) {
        if (h._endedByHidden && h.opts.restartOnReturn !== false && h._restart) {
          h._endedByHidden = false;
          h._restoreAfterHide('visible').catch((err) => this._em.emit('error', err));
        }
      }
    }
  }

  // ----- matching ----------------------------------------------------------------

  /**
   * Enter the matching pool (a `matching` session; replaces this user's previous one).
   * @param {MatchingPrefs} prefs
   * @param {SessionOptions} [opts]
   * @returns {Promise<SessionHandle>}
   */
  async startMatching(prefs, opts = {}) {
    this.connect();
    await this.ready(opts.connectTimeoutMs ?? 3000);
    const session = await this._startMatchingSession(prefs);
    const handle = new SessionHandle(this, session, opts, () => this._startMatchingSession(prefs));
    handle.prefs = prefs;
    await handle._begin();
    handle._checkNextMatch().catch(() => {});
    return handle;
  }

  async _startMatchingSession(prefs) {
    const body = {
      min_age: prefs.min_age ?? prefs.minAge,
      max_age: prefs.max_age ?? prefs.maxAge,
    };
    const interests = prefs.preferred_interests ?? prefs.preferredInterests;
    if (interests) body.preferred_interests = interests;
    const pw = prefs.personality_weight ?? prefs.personalityWeight;
    if (pw != null) body.personality_weight = pw;
    const r = await this.request('POST', '/v1/matching/start', body);
    if (r && r.session && r.session.id) return r.session;
    let session = null;
    try {
      session = await this.getSession(r.session_id);
    } catch {
      session = { id: r.session_id, kind: 'matching', status: r.status ?? 'active' };
    }
    return session;
  }

  /**
   * Poll GET /v1/matching/next once (also a heartbeat). Announces a found match.
   * @param {string} sessionId
   */
  async nextMatch(sessionId) {
    const r = await this.request('GET', `/v1/matching/next?session_id=${encodeURIComponent(sessionId)}`);
    if (r && r.match_found && r.match) this._announceMatch(r.match, null);
    return r;
  }

  /**
   * Join a call (the timer starts once both users joined).
   * @param {string} callId
   * @returns {Promise<{timer_started: boolean, ends_at: string | null}>}
   */
  joinCall(callId) {
    return this.request('POST', `/v1/calls/${encodeURIComponent(callId)}/join`);
  }

  /** @param {string} callId */
  getCall(callId) {
    return this.request('GET', `/v1/calls/${encodeURIComponent(callId)}`);
  }

  /** Leave/end a call. @param {string} callId */
  endCall(callId) {
    return this.request('POST', `/v1/calls/${encodeURIComponent(callId)}/end`);
  }

  /**
   * Create the RTCPeerConnection for a matched call and connect it through
   * Tether's signalling. See Call.
   * @param {ConnectCallOptions} opts
   * @returns {Promise<Call>}
   */
  async connectCall(opts) {
    if (!opts || !opts.callId) throw new TypeError('connectCall: callId is required');
    const existing = this._calls.get(opts.callId);
    if (existing && !existing.ended) return existing;
    await this.token();
    const call = new Call(this, opts);
    this._calls.set(opts.callId, call);
    try {
      await call._start();
    } catch (e) {
      call.close();
      this._calls.delete(opts.callId);
      throw e;
    }
    return call;
  }

  /** @param {string} callId @param {Signal} signal */
  async _sendSignal(callId, signal) {
    if (this._wsSend({ type: 'signal', call_id: callId, signal })) return;
    await this.request('POST', `/v1/calls/${encodeURIComponent(callId)}/signals`, signal);
  }

  /**
   * Record the decision after a call.
   * @param {string} callId
   * @param {'skip'|'continue'} decision
   * @param {{personalityRating?: number[]}} [o]
   */
  decide(callId, decision, o = {}) {
    const body = { call_id: callId, decision };
    if (o.personalityRating) body.personality_rating = o.personalityRating;
    return this.request('POST', '/v1/matching/decision', body);
  }

  /** Mutual matches. @returns {Promise<Array<{user_id: string, name: string, matched_at: string}>>} */
  async matches() {
    const r = await this.request('GET', '/v1/matches');
    return (r && r.matches) || [];
  }

  /** Save a profile (API key, or the user itself on a demo server). */
  putProfile(userId, profile) {
    return this.request('PUT', `/v1/profiles/${encodeURIComponent(userId)}`, profile);
  }
}

// ---------------------------------------------------------------------------
// Conflict (per_user = "reject")
// ---------------------------------------------------------------------------

export class Conflict {
  constructor(client, kind, opts, blockingSession, error) {
    /** @type {true} */
    this.conflict = true;
    this.kind = kind;
    /** @type {Session} the live session that blocks a new one */
    this.blockingSession = blockingSession;
    this.error = error;
    this._client = client;
    this._opts = opts;
  }
  /** End the blocking session (`taken_over`) and start a new one. */
  async takeover() {
    const r = await this._client.startSession(this.kind, { ...this._opts, onConflict: 'takeover' });
    return /** @type {SessionHandle} */ (r);
  }
}

// ---------------------------------------------------------------------------
// Session handle
// ---------------------------------------------------------------------------

export class SessionHandle {
  /**
   * @param {TetherClient} client
   * @param {Session} session
   * @param {SessionOptions} opts
   * @param {(() => Promise<Session>) | null} restart
   */
  constructor(client, session, opts, restart) {
    /** @type {false} */
    this.conflict = false;
    this.client = client;
    this.session = session;
    this.id = session.id;
    this.kind = session.kind;
    this.opts = opts || {};
    this.ended = !isLive(session) && session.status != null;
    this.endReason = session.end_reason ?? null;
    this.heartbeatIntervalMs = null;
    this._em = new Emitter();
    this._hb = null;
    this._restart = restart;
    this._beaconed = false;
    this._endedByHidden = false;
    this._hbFailures = 0;
    /** @type {string[]} ids of sessions this one superseded (per_user = "replace") */
    this.superseded = [];
    /** @type {MatchingPrefs | undefined} */
    this.prefs = undefined;
  }

  get status() {
    return this.ended ? 'ended' : this.session.status;
  }

  /**
   * "ended" (reason, session) · "update" (session) · "event" (event) ·
   * "restarted" ({previousId, session}) · "error" (err)
   * @param {string} type
   * @param {Function} fn
   */
  on(type, fn) {
    return this._em.on(type, /** @type {any} */ (fn));
  }

  async _begin() {
    this.client._sessions.set(this.id, this);
    this.client._installLifecycle();
    if (this.ended) return;
    if (this.opts.heartbeat === false) return;
    let interval = this.opts.heartbeatIntervalMs;
    if (interval == null) interval = heartbeatIntervalFor(await this.client._kind(this.kind));
    this.heartbeatIntervalMs = interval;
    this._startHeartbeats();
  }

  _detach() {
    this._stopHeartbeats();
    this.client._sessions.delete(this.id);
  }

  _startHeartbeats() {
    this._stopHeartbeats();
    if (this.ended || !this.heartbeatIntervalMs) return;
    this._hb = setInterval(() => this.heartbeat().catch(() => {}), this.heartbeatIntervalMs);
  }

  _stopHeartbeats() {
    if (this._hb) clearInterval(this._hb);
    this._hb = null;
  }

  /** Send one heartbeat now (over the WebSocket when open, else HTTP). */
  async heartbeat() {
    if (this.ended) return this.session;
    try {
      const s = await this.client._heartbeat(this.id);
      this._hbFailures = 0;
      if (s && s.id) this._update(s);
      return this.session;
    } catch (e) {
      if (e instanceof TetherError && (e.status === 410 || e.status === 404)) {
        this._markEnded(e.problem.end_reason ?? (e.status === 404 ? 'gone' : 'ended'), null);
      } else {
        this._hbFailures++;
        this._em.emit('error', e);
      }
      throw e;
    }
  }

  /** Re-read the session from the server. */
  async refresh() {
    try {
      const s = await this.client.getSession(this.id);
      this._update(s);
      if (!isLive(s)) this._markEnded(s.end_reason ?? 'ended', s);
      return s;
    } catch (e) {
      if (e instanceof TetherError && (e.status === 404 || e.status === 410)) {
        this._markEnded(e.problem.end_reason ?? 'gone', null);
      }
      throw e;
    }
  }

  /** End the session (idempotent). @param {string} [reason] */
  async end(reason) {
    this._stopHeartbeats();
    const s = await this.client.endSession(this.id, reason);
    this._markEnded((s && s.end_reason) || 'ended', s && s.id ? s : null);
    return this.session;
  }

  /** Move the session to `completing`. */
  async complete() {
    const s = await this.client.request('POST', `/v1/sessions/${encodeURIComponent(this.id)}/complete`);
    this._update(s);
    return s;
  }

  /** End it now with the beacon (what pagehide does). */
  beacon() {
    this._stopHeartbeats();
    this._beaconed = true;
    return this.client.beacon(this.id);
  }

  /** @param {TetherEvent} ev */
  _onEvent(ev) {
    if (ev.session) this._update(ev.session);
    this._em.emit('event', ev);
    if (ev.type === 'session.ended') {
      this._markEnded(ev.reason ?? ev.session?.end_reason ?? 'ended', ev.session ?? null);
    }
  }

  _update(s) {
    if (!s || s.id !== this.id) return;
    this.session = s;
    this._em.emit('update', s);
  }

  _markEnded(reason, session) {
    if (session) this.session = session;
    if (this.ended) return;
    this.ended = true;
    this.endReason = reason;
    this._stopHeartbeats();
    this._em.emit('ended', reason, this.session);
  }

  async _checkNextMatch() {
    if (this.ended || this.kind !== 'matching') return null;
    try {
      return await this.client.nextMatch(this.id);
    } catch (e) {
      if (e instanceof TetherError && (e.status === 410 || e.status === 404)) {
        this._markEnded(e.problem.end_reason ?? 'ended', null);
      }
      throw e;
    }
  }

  /** After bfcache restore / return to a visible page. */
  async _restoreAfterHide(why) {
    let s = null;
    try {
      s = await this.client.getSession(this.id);
    } catch (e) {
      if (!(e instanceof TetherError && (e.status === 404 || e.status === 410))) throw e;
    }
    if (s && isLive(s)) {
      // the beacon did not get through: carry on
      this._beaconed = false;
      this.ended = false;
      this._update(s);
      this._startHeartbeats();
      return;
    }
    if (!this._restart || this.opts.restartOnRestore === false) {
      this._markEnded((s && s.end_reason) || 'closed', s);
      return;
    }
    const previousId = this.id;
    const fresh = await this._restart();
    this.client._sessions.delete(previousId);
    this.id = fresh.id;
    this.session = fresh;
    this.ended = !isLive(fresh);
    this.endReason = null;
    this._beaconed = false;
    this.client._sessions.set(this.id, this);
    this._startHeartbeats();
    this._em.emit('restarted', { previousId, session: fresh, why });
    if (this.kind === 'matching') this._checkNextMatch().catch(() => {});
  }
}

// ---------------------------------------------------------------------------
// Call: WebRTC with perfect negotiation over Tether signalling
// ---------------------------------------------------------------------------

export class Call {
  /**
   * @param {TetherClient} client
   * @param {ConnectCallOptions} opts
   */
  constructor(client, opts) {
    this.client = client;
    this.callId = opts.callId;
    this.opts = opts;
    this.localStream = opts.localStream ?? null;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {MediaStream | null} */
    this.remoteStream = null;
    this.match = client._matches.get(opts.callId) ?? null;
    this.partnerId = opts.partnerId ?? this.match?.partner?.user_id ?? null;
    this.isOfferer = false;
    this.polite = true;
    /** @type {Date | null} */
    this.endsAt = null;
    this.timerStarted = false;
    this.session = null;
    this.ended = false;
    this.endReason = null;
    this.connected = false;
    this.setupMs = null;
    this._em = new Emitter();
    this._t0 = 0;
    // signals wait here until the peer connection exists (the join request
    // is still in flight when the partner's offer may already arrive)
    this._queue = new Promise((resolve) => (this._pcReady = resolve));
    this._seenSignals = new RecentSet(1000);
    this._pendingCandidates = [];
    this._makingOffer = false;
    this._ignoreOffer = false;
    this._answerPending = false;
    this._hadRemoteDescription = false;
    this._pollTimer = null;
    this._drainTimer = null;
    // signals that arrived before connectCall (in arrival order, first)
    const buffered = client._signalBuffers.get(this.callId) || [];
    client._signalBuffers.delete(this.callId);
    for (const sig of buffered) this._receive(sig);
  }

  /**
   * "remotestream" (MediaStream) · "track" (RTCTrackEvent) · "state"
   * (connectionState) · "connected" ({setupMs}) · "timer" ({endsAt}) ·
   * "ended" (reason) · "error" (err)
   */
  on(type, fn) {
    return this._em.on(type, fn);
  }

  /** Milliseconds left on the call timer (null before it starts). */
  remainingMs() {
    if (!this.endsAt) return null;
    return Math.max(0, this.endsAt.getTime() - Date.now());
  }

  async _start() {
    const client = this.client;
    this._t0 = nowMs();
    if (this.opts.join !== false) {
      let j;
      try {
        j = await client.joinCall(this.callId);
      } catch (e) {
        if (e instanceof TetherError && e.status === 410) {
          this._end(e.problem.end_reason ?? 'partner_left');
          return;
        }
        throw e;
      }
      this.joined = j;
      if (j && j.ends_at) this._setEndsAt(j.ends_at, !!j.timer_started);
    }
    if (!this.partnerId) {
      try {
        const s = await client.getCall(this.callId);
        this.session = s;
        const me = client.userId;
        if (s.user_id && s.user_id !== me) this.partnerId = s.user_id;
        else {
          const p = (s.participants || []).find((x) => x.id !== me);
          if (p) this.partnerId = p.id;
        }
        if (s.metadata) {
          const ids = s.metadata.user_ids || s.metadata.users;
          if (!this.partnerId && Array.isArray(ids)) this.partnerId = ids.find((x) => x !== me) ?? null;
        }
      } catch {}
    }
    if (!this.partnerId) throw new Error('connectCall: cannot tell the partner; pass partnerId');
    const me = client.userId;
    if (!me) throw new Error('connectCall: unknown own user id; pass userId to createClient');
    this.isOfferer = isOfferer(me, this.partnerId);
    this.polite = !this.isOfferer;

    const RTC = client._RTC ?? globalThis.RTCPeerConnection;
    if (!RTC) throw new Error('connectCall: RTCPeerConnection is not available');
    const pc = new RTC({ iceServers: this.opts.iceServers ?? [], ...(this.opts.rtcConfig || {}) });
    this.pc = pc;
    const MS = globalThis.MediaStream;
    this.remoteStream = MS ? new MS() : null;

    pc.ontrack = (ev) => {
      const stream = this.remoteStream;
      if (stream && !stream.getTracks().includes(ev.track)) stream.addTrack(ev.track);
      this._em.emit('track', ev);
      this._em.emit('remotestream', stream ?? (ev.streams && ev.streams[0]));
    };
    pc.onicecandidate = ({ candidate }) => {
      if (!candidate) return;
      this._send({ type: 'ice-candidate', data: candidate.toJSON ? candidate.toJSON() : candidate });
    };
    pc.onnegotiationneeded = async () => {
      // The non-offerer waits for the first offer; its tracks are picked up
      // by the offer's m-lines. From then on either side may renegotiate.
      if (!this.isOfferer && !this._hadRemoteDescription) return;
      try {
        this._makingOffer = true;
        await pc.setLocalDescription();
        await this._send({ type: pc.localDescription.type, data: descJSON(pc.localDescription) });
      } catch (e) {
        this._em.emit('error', e);
      } finally {
        this._makingOffer = false;
      }
    };
    pc.onconnectionstatechange = () => {
      const st = pc.connectionState;
      this._em.emit('state', st);
      if (st === 'connected' && !this.connected) {
        this.connected = true;
        this.setupMs = Math.round(nowMs() - this._t0);
        this._reportConnected();
        this._em.emit('connected', { setupMs: this.setupMs });
      }
      if (st === 'failed' && this.isOfferer && typeof pc.restartIce === 'function') pc.restartIce();
    };

    const stream = this.localStream;
    const kinds = new Set();
    if (stream) {
      for (const track of stream.getTracks()) {
        pc.addTrack(track, stream);
        kinds.add(track.kind);
      }
    }
    if (this.isOfferer) {
      for (const k of ['audio', 'video']) if (!kinds.has(k)) pc.addTransceiver(k, { direction: 'recvonly' });
    }

    // process the signals that arrived before the peer connection existed
    this._pcReady();
    this._drainHttp().catch(() => {});
    this._pollTimer = setInterval(() => this._poll().catch(() => {}), this.opts.pollIntervalMs ?? 3000);
    // HTTP drain while no event transport is open
    this._drainTimer = setInterval(() => {
      if (client.connectionState !== 'open') this._drainHttp().catch(() => {});
    }, 1000);
  }

  _setEndsAt(iso, started) {
    if (!iso) return;
    const d = new Date(iso);
    if (isNaN(d.getTime())) return;
    const changed = !this.endsAt || this.endsAt.getTime() !== d.getTime() || started !== this.timerStarted;
    this.endsAt = d;
    this.timerStarted = this.timerStarted || started;
    if (changed) this._em.emit('timer', { endsAt: d, started: this.timerStarted });
  }

  async _send(signal) {
    if (this.ended) return;
    try {
      await this.client._sendSignal(this.callId, signal);
    } catch (e) {
      if (e instanceof TetherError && e.status === 410) this._end(e.problem.end_reason ?? 'partner_left');
      else this._em.emit('error', e);
    }
  }

  async _reportConnected() {
    const ms = this.setupMs;
    if (this.client._wsSend({ type: 'webrtc.connected', call_id: this.callId, setup_ms: ms })) return;
    try {
      await this.client.request('POST', `/v1/calls/${encodeURIComponent(this.callId)}/webrtc`, { setup_ms: ms });
    } catch {}
  }

  /** @param {Signal} signal */
  _receive(signal) {
    if (this.ended || !signal || !signal.type) return;
    if (signal.from && this.client.userId && signal.from === this.client.userId) return;
    const key = signal.type + '|' + JSON.stringify(signal.data ?? null);
    if (this._seenSignals.has(key)) return;
    this._seenSignals.add(key);
    this._queue = this._queue
      .then(() => this._handleSignal(signal))
      .catch((e) => this._em.emit('error', e));
  }

  async _handleSignal(signal) {
    const pc = this.pc;
    if (!pc || this.ended || pc.signalingState === 'closed') return;
    if (signal.type === 'offer' || signal.type === 'answer') {
      const data = signal.data || {};
      const description = { type: signal.type, sdp: data.sdp ?? data };
      const readyForOffer =
        !this._makingOffer && (pc.signalingState === 'stable' || this._answerPending);
      const offerCollision = description.type === 'offer' && !readyForOffer;
      this._ignoreOffer = !this.polite && offerCollision;
      if (this._ignoreOffer) return;
      if (description.type === 'answer' && pc.signalingState !== 'have-local-offer') return; // stale
      this._answerPending = description.type === 'answer';
      await pc.setRemoteDescription(description);
      this._answerPending = false;
      this._hadRemoteDescription = true;
      const pending = this._pendingCandidates;
      this._pendingCandidates = [];
      for (const c of pending) await this._addCandidate(c);
      if (description.type === 'offer') {
        await pc.setLocalDescription();
        await this._send({ type: 'answer', data: descJSON(pc.localDescription) });
      }
    } else if (signal.type === 'ice-candidate') {
      if (!pc.remoteDescription) {
        this._pendingCandidates.push(signal.data);
        return;
      }
      await this._addCandidate(signal.data);
    }
  }

  async _addCandidate(c) {
    try {
      await this.pc.addIceCandidate(c);
    } catch (e) {
      if (!this._ignoreOffer) this._em.emit('error', e);
    }
  }

  async _drainHttp() {
    if (this.ended) return;
    try {
      const r = await this.client.request('GET', `/v1/calls/${encodeURIComponent(this.callId)}/signals`);
      for (const s of (r && r.signals) || []) this._receive(s);
    } catch (e) {
      if (e instanceof TetherError && e.status === 410) this._end(e.problem.end_reason ?? 'partner_left');
    }
  }

  /** Backup for missed events: read the call session. */
  async _poll() {
    if (this.ended) return;
    try {
      const s = await this.client.getCall(this.callId);
      this._applySession(s);
    } catch (e) {
      if (e instanceof TetherError && e.status === 410) this._end(e.problem.end_reason ?? 'partner_left');
    }
  }

  _applySession(s) {
    if (!s) return;
    this.session = s;
    if (s.status === 'active' && s.expires_at) this._setEndsAt(s.expires_at, true);
    if (s.status === 'ended' || s.ended_at) this._end(s.end_reason ?? 'ended');
  }

  /** @param {TetherEvent} ev */
  _onSessionEvent(ev) {
    if (ev.type === 'session.ended') {
      if (ev.session) this.session = ev.session;
      this._end(ev.reason ?? ev.session?.end_reason ?? 'ended');
    } else if (ev.session) {
      this._applySession(ev.session);
    }
  }

  /** Whether the call became active (both joined) before it ended. */
  get wasActive() {
    return !!(this.timerStarted || (this.session && this.session.activated_at));
  }

  /** End the call for both (POST /v1/calls/{id}/end) and close the connection. */
  async hangup() {
    if (this.ended) return;
    try {
      await this.client.endCall(this.callId);
    } catch (e) {
      if (!(e instanceof TetherError && e.status === 410)) throw e;
    }
    this._end('ended');
  }

  _end(reason) {
    if (this.ended) return;
    this.ended = true;
    this.endReason = reason;
    this.close();
    this._em.emit('ended', reason);
  }

  /** Close the peer connection locally (does not tell the server). */
  close() {
    if (this._pcReady) this._pcReady();
    clearInterval(this._pollTimer);
    clearInterval(this._drainTimer);
    this._pollTimer = this._drainTimer = null;
    if (this.pc && this.pc.signalingState !== 'closed') {
      try {
        this.pc.close();
      } catch {}
    }
  }
}

function descJSON(d) {
  if (!d) return null;
  if (typeof d.toJSON === 'function') return d.toJSON();
  return { type: d.type, sdp: d.sdp };
}

function nowMs() {
  const p = globalThis.performance;
  return p && typeof p.now === 'function' ? p.now() : Date.now();
}

export default { createClient, fetchDemoToken, backoffDelay, heartbeatIntervalFor, isOfferer, decodeJwtPayload, TetherError, VERSION };
