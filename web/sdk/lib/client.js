// The client: one per page and server (or cluster: `urls`). It holds the
// token, makes the HTTP requests (moving to the next URL when one stops
// answering, see lib/endpoints.js), owns the event connection and the page
// lifecycle, routes each server event to the session handles and calls it
// concerns, and — after a reconnect or a `stream.gap` — catches up on
// everything it tracks: a reopened WebSocket (which has no resume point)
// replays each tracked session's missed events from its history, and every
// tracked session is re-read, so an event lost on the way still has its effect.

import { Call } from './call.js';
import { Emitter, RecentSet } from './emitter.js';
import { TetherError } from './errors.js';
import { Endpoints, isNetworkError, neverReachedServer, safeToRepeat, urlsFrom } from './endpoints.js';
import { normalizeBase, readBody } from './http.js';
import { PageLifecycle, sendEndBeacon } from './page.js';
import { Conflict, SessionHandle } from './session.js';
import { EventTransport } from './transport.js';
import { decodeJwtPayload } from './util.js';
import { isLive } from './vocabulary.js';

/** @typedef {import('../tether.d.ts').Session} Session */
/** @typedef {import('../tether.d.ts').SessionEvent} SessionEvent */
/** @typedef {import('../tether.d.ts').StreamGapEvent} StreamGapEvent */
/** @typedef {import('../tether.d.ts').ExpiringEvent} ExpiringEvent */
/** @typedef {import('../tether.d.ts').KindInfo} KindInfo */
/** @typedef {import('../tether.d.ts').Match} Match */
/** @typedef {import('../tether.d.ts').Signal} Signal */
/** @typedef {import('../tether.d.ts').ClientOptions} ClientOptions */
/** @typedef {import('../tether.d.ts').SessionOptions} SessionOptions */
/** @typedef {import('../tether.d.ts').MatchingPrefs} MatchingPrefs */
/** @typedef {import('../tether.d.ts').ConnectCallOptions} ConnectCallOptions */

/**
 * Create a Tether client.
 * @param {ClientOptions} options
 * @returns {TetherClient}
 */
export function createClient(options) {
  return new TetherClient(options);
}

/** The TetherError (status 0) of a request that got no answer. */
function networkError(e) {
  return new TetherError(0, { title: 'Network error', detail: String(e && e.message ? e.message : e) });
}

export class TetherClient {
  /** @param {ClientOptions} options */
  constructor(options = /** @type {any} */ ({})) {
    if (typeof options.getToken !== 'function') {
      throw new TypeError('createClient: getToken must be a function returning a token');
    }
    if (options.onGap != null && typeof options.onGap !== 'function') {
      throw new TypeError('createClient: onGap must be a function');
    }
    this._endpoints = new Endpoints(urlsFrom(options, normalizeBase));
    this._getToken = options.getToken;
    this._fetch = options.fetch ?? ((...a) => globalThis.fetch(...a));
    this._RTC = options.RTCPeerConnection;
    this._gapListener = options.onGap ?? null;
    /** @type {'auto'|'ws'|'sse'|'none'} */
    this.transport = options.transport ?? 'auto';
    this.lifecycle = options.lifecycle ?? true;
    this.debug = !!options.debug;
    this._userId = options.userId ?? null;

    this._em = new Emitter();
    this._seenEvents = new RecentSet(2000);
    // session ids whose session.ended was dispatched: a re-read after a gap
    // and the server's own event must not end a session twice for the app
    this._endedSessions = new RecentSet(2000);
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

    this.connectionState = 'idle'; // idle | connecting | open | closed
    this.activeTransport = null; // 'ws' | 'sse' | null
    this._started = false;
    this._closed = false;
    this._openWaiters = [];
    this._page = new PageLifecycle(this);
    this._events = new EventTransport(
      {
        endpoints: this._endpoints,
        mode: this.transport === 'none' ? 'auto' : this.transport,
        WebSocket: options.WebSocket,
        EventSource: options.EventSource,
        backoff: { baseMs: 250, capMs: 10_000, ...(options.backoff || {}) },
        wsFailuresBeforeFallback: options.wsFailuresBeforeFallback ?? 3,
        pingIntervalMs: options.pingIntervalMs ?? 20_000,
      },
      {
        token: () => this.token(),
        lastEventId: () => this._lastEventId,
        onFrame: (frame) => this._onFrame(frame),
        onState: (state, transport) => this._setConnection(state, transport),
        // called before the new connection's first frame is handled: the
        // last id seen is where the previous connection stopped
        onOpened: (transport) => this._catchUp(transport === 'ws' ? this._lastEventId : null),
        onError: (e) => this._em.emit('error', e),
        log: (...a) => this._log(...a),
      },
    );
  }

  // ----- identity & HTTP -------------------------------------------------

  /** The server URL requests and connections go to now (one of `urls`). */
  get baseUrl() {
    return this._endpoints.current;
  }

  /** Every server URL this client may use, in order. */
  get urls() {
    return this._endpoints.urls;
  }

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
   * An authenticated JSON request to the server. A request that gets no
   * answer moves the client to its next URL, and is sent there once more
   * when that is safe (see lib/endpoints.js: idempotent requests, or ones
   * that provably never reached a server); `idempotent: true` marks a
   * request safe to repeat.
   * @param {string} method
   * @param {string} path e.g. "/v1/sessions"
   * @param {any} [body]
   * @param {{keepalive?: boolean, signal?: AbortSignal, idempotent?: boolean, headers?: Record<string,string>}} [o]
   */
  async request(method, path, body, o = {}) {
    return (await this._send(method, path, body, o)).data;
  }

  /** request(), answering the Response (headers) beside the parsed body. */
  async _send(method, path, body, o = {}) {
    const token = await this.token();
    /** @type {Record<string,string>} */
    const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json', ...(o.headers || {}) };
    const init = { method, headers, keepalive: !!o.keepalive, signal: o.signal };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let url = this._endpoints.current;
    let res;
    try {
      res = await this._fetch(url + path, init);
    } catch (e) {
      if (!isNetworkError(e)) throw networkError(e);
      const next = this._endpoints.failed(url);
      if (next === url || !(o.idempotent || safeToRepeat(method, path) || neverReachedServer(e))) throw networkError(e);
      this._log('no answer from', url, '; sending', method, path, 'to', next);
      url = next;
      try {
        res = await this._fetch(url + path, init);
      } catch (e2) {
        if (isNetworkError(e2)) this._endpoints.failed(url);
        throw networkError(e2);
      }
    }
    const data = await readBody(res);
    if (!res.ok) throw new TetherError(res.status, data);
    return { res, data };
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
   * Subscribe to server events by type ("session.ended", "match.found",
   * "stream.gap", …), "*" for all of them, or SDK events: "connection"
   * ({state, transport}), "error". Opens the event connection if needed.
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
   * @param {(match: Match, ev: SessionEvent | null) => void} fn
   */
  onMatch(fn) {
    return this.on('match', fn);
  }

  /**
   * Called with (event, handle) for every `session.expiring` — a deadline
   * that would end the session is the kind's `warn_before` away (`deadline`,
   * and the `reason` it would end with). Ask the user "still there?" and
   * call `handle.heartbeat()` to move an idle deadline; `handle` is null for
   * a session this client does not track.
   * @param {(ev: ExpiringEvent, handle: SessionHandle | null) => void} fn
   */
  onExpiring(fn) {
    return this.on('session.expiring', (ev) => fn(ev, this._sessions.get(ev.session?.id) ?? null));
  }

  /** Start the event connection (idempotent). */
  connect() {
    if (this._closed) return;
    if (this._started) return;
    this._started = true;
    this._installLifecycle();
    if (this.transport === 'none') return;
    this._events.start();
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
    this._events.close();
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

  /** Send a client message on the WebSocket; false when none is open (the caller uses HTTP). */
  _wsSend(obj) {
    return this._events.send(obj);
  }

  /**
   * Catch up on everything tracked, after (re)connecting or a `stream.gap`:
   * sessions that ended meanwhile get the same handling as their
   * `session.ended` event; matching sessions ask for a match they missed;
   * calls drain their signals. `replayAfter` (a WebSocket reopened after
   * events up to that id were seen: the WebSocket has no resume point) first
   * replays each tracked session's later events from its history, in order,
   * so none is missed — an SSE stream resumes with `Last-Event-ID` instead.
   * Resolves when every re-read has settled.
   * @param {number | null} [replayAfter]
   */
  _catchUp(replayAfter = null) {
    const tasks = [];
    for (const h of this._sessions.values()) {
      if (h._beaconed || h.ended) continue; // a bfcache restore is dealing with a beaconed one
      const matching = h.kind === 'matching';
      const replay = replayAfter != null ? this._replay(h.id, replayAfter) : Promise.resolve();
      tasks.push(
        replay
          .catch((e) => this._log('history unavailable', h.id, e))
          .then(() => this._resync(h.id, () => this.getSession(h.id)))
          .then(() => {
            if (matching) return h._checkNextMatch();
          }),
      );
    }
    for (const c of this._calls.values()) {
      if (c.ended) continue;
      tasks.push(this._resync(c.callId, () => this.getCall(c.callId)), c._drainHttp());
    }
    return Promise.allSettled(tasks);
  }

  /**
   * Dispatch a session's events after `afterId` from its history (those not
   * seen yet; signals excepted: a call drains its own).
   * @param {string} id
   * @param {number} afterId
   */
  async _replay(id, afterId) {
    const r = await this.request('GET', `/v1/sessions/${encodeURIComponent(id)}/history`);
    for (const ev of (r && r.events) || []) {
      if (ev.id == null || !(Number(ev.id) > afterId) || ev.type === 'call.signal') continue;
      this._dispatch({ ...ev, replayed: true });
    }
  }

  /**
   * Re-read one tracked session and apply what changed.
   * @param {string} id
   * @param {() => Promise<Session>} read
   */
  async _resync(id, read) {
    let s;
    try {
      s = await read();
    } catch (e) {
      if (!(e instanceof TetherError && (e.status === 404 || e.status === 410))) throw e;
      const reason = e.problem.end_reason ?? (e.status === 404 ? 'gone' : 'ended');
      this._sessions.get(id)?._markEnded(reason, null);
      this._calls.get(id)?._end(reason);
      return;
    }
    if (!isLive(s)) {
      // no id: it is not the server's event (that one may still come, and is
      // then recognised by its session id)
      this._dispatch({ type: 'session.ended', at: s.ended_at, session: s, reason: s.end_reason ?? 'ended', resynced: true });
      return;
    }
    this._sessions.get(id)?._update(s);
    this._calls.get(id)?._applySession(s);
  }

  /** A frame from the WebSocket or an SSE event. */
  _onFrame(data) {
    if (!data || typeof data !== 'object') return;
    if (data.type === 'pong') return;
    if (data.type === 'error') {
      this._onServerError(data);
      return;
    }
    if (data.type === 'stream.gap') {
      this._onGap(data);
      return;
    }
    this._dispatch(data);
  }

  /**
   * The server skipped events `from..=to` for this subscriber (it fell behind
   * the resume log, or resumed from before it): tell the app, then re-read.
   */
  _onGap(frame) {
    /** @type {StreamGapEvent} */
    const gap = { type: 'stream.gap', from: Number(frame.from), to: Number(frame.to) };
    if (frame.id != null && /^\d+$/.test(String(frame.id))) gap.id = Number(frame.id);
    // the skipped ids are consumed: a later SSE resume starts after them
    if (Number.isFinite(gap.to) && (this._lastEventId == null || gap.to > this._lastEventId)) {
      this._lastEventId = gap.to;
    }
    this._log('events skipped by the server', gap.from, '..', gap.to);
    if (this._gapListener) {
      try {
        this._gapListener(gap);
      } catch (e) {
        if (globalThis.console) console.error('tether onGap error', e);
      }
    }
    this._em.emit('stream.gap', gap);
    this._em.emit('*', gap);
    return this._catchUp();
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

  /** @param {SessionEvent} ev */
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
    if (ev.type === 'session.ended' && sid) {
      if (this._endedSessions.has(sid)) return;
      this._endedSessions.add(sid);
    }
    // a revived session may end again: that end is news too
    if (ev.type === 'session.revived' && sid) this._endedSessions.delete(sid);
    if (ev.type === 'call.signal') {
      const callId = ev.session && ev.session.id;
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

  /**
   * Revive a session that ended `idle_timeout` or `disconnected` within its
   * kind's `revive_window` (e.g. after a browser crash): the same session,
   * active again, tracked like a started one. Resolves to its SessionHandle,
   * or — when a `per_user = "reject"` kind has another live session for the
   * user — to a Conflict whose takeover() ends that one and revives this.
   * Rejects with a TetherError 409 when the session cannot be revived (the
   * problem's detail says why: start a new one then), 404/403 when it is not
   * the caller's.
   * @param {string} id
   * @param {SessionOptions} [opts]
   * @returns {Promise<SessionHandle | Conflict>}
   */
  async revive(id, opts = {}) {
    this.connect();
    await this.ready(opts.connectTimeoutMs ?? 3000);
    const body = opts.onConflict === 'takeover' ? { on_conflict: 'takeover' } : {};
    let session;
    try {
      session = await this.request('POST', `/v1/sessions/${encodeURIComponent(id)}/revive`, body);
    } catch (e) {
      if (e instanceof TetherError && e.status === 409 && e.problem && e.problem.blocking_session) {
        const blocking = e.problem.blocking_session;
        return new Conflict(this, blocking.kind, opts, blocking, e, () => this.revive(id, { ...opts, onConflict: 'takeover' }));
      }
      throw e;
    }
    this._endedSessions.delete(session.id);
    const tracked = this._sessions.get(session.id);
    if (tracked) {
      tracked._revived(session);
      return tracked;
    }
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

  /**
   * One heartbeat: over the WebSocket when it is open (null: no answer),
   * else over HTTP with `Prefer: return=minimal` — the server answers 204
   * with the new deadline in `Tether-Expires-At` instead of the session.
   * @param {string} sessionId
   * @returns {Promise<{expires_at: string | null} | Session | null>}
   */
  async _heartbeat(sessionId) {
    if (this._wsSend({ type: 'heartbeat', session_id: sessionId })) return null;
    const { res, data } = await this._send('POST', `/v1/sessions/${encodeURIComponent(sessionId)}/heartbeat`, undefined, {
      headers: { Prefer: 'return=minimal' },
    });
    // a server that ignores the preference answers the session, as before
    if (data && data.id) return data;
    return { expires_at: res.headers.get('tether-expires-at') };
  }

  /**
   * End a session with navigator.sendBeacon (works while the page unloads).
   * Falls back to fetch({keepalive:true}). Returns whether it was queued.
   * @param {string} sessionId
   */
  beacon(sessionId) {
    return sendEndBeacon({ baseUrl: this._endpoints.current, token: this._lastToken, sessionId, fetch: this._fetch });
  }

  // ----- page lifecycle --------------------------------------------------------

  _installLifecycle() {
    if (this.lifecycle) this._page.install();
  }

  /** The page went away (pagehide): close the event connection until it is shown again. */
  _suspend() {
    this._events.suspend();
    this._setConnection('closed', null);
  }

  /**
   * The page is shown again. True when it came back from the back/forward
   * cache (the event connection is reopened and sessions must be re-checked);
   * false for a fresh load, which has a fresh client anyway.
   * @param {boolean} persisted
   */
  _resume(persisted) {
    if (!this._events.suspended) return false;
    this._events.resume();
    if (!persisted) return false;
    if (this._started) {
      this._started = false;
      this.connect();
    }
    return true;
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
