// The event connection: one WebSocket (events in; heartbeats, signals and
// reports out), with a Server-Sent Events bridge when the WebSocket keeps
// failing, reconnects with backoff, and a keep-alive ping that detects dead
// sockets. It owns only the sockets; what the frames mean is the client's.
// Both transports connect to the client's current URL; a connection that
// fails before the server answered on it moves the current URL to the next
// of the client's `urls` (lib/endpoints.js), so with several nodes the next
// attempt goes to another node. One that worked and dropped is retried where
// it was first (a blip, or a load balancer URL), then moves on if that fails.
//
// Why these rules: kinds with `disconnect_grace` (matching: 5 s) end the
// session when the owner's last socket stays closed, so the first retry comes
// within 250 ms (full jitter, cap 10 s). A proxy that eats upgrades makes the
// WebSocket fail every time: after `wsFailuresBeforeFallback` failed opens the
// SSE stream carries events (resuming after the last event id seen on either
// transport) while the WebSocket is still retried in the background and wins
// when it comes back. The SSE stream's reconnection is the SDK's too, not
// the EventSource's own (which would retry one URL forever): it resumes with
// `?last_event_id=` after the last event seen on either transport — event ids
// are cluster-wide, so that holds on any node.

import { backoffDelay } from './util.js';
import { EVENT_TYPES } from './vocabulary.js';

/**
 * @typedef {object} TransportHooks
 * @property {() => Promise<string>} token the bearer token for a (re)connection
 * @property {() => number | null} lastEventId where an SSE stream resumes
 * @property {(frame: any) => void} onFrame a parsed WebSocket frame or SSE event
 * @property {(state: 'connecting'|'open'|'closed', transport: 'ws'|'sse'|null) => void} onState
 * @property {(transport: 'ws'|'sse') => void} onOpened a transport (re)opened: events may have been missed
 * @property {(err: unknown) => void} onError
 * @property {(...a: any[]) => void} log
 */

export class EventTransport {
  /**
   * @param {object} o
   * @param {import('./endpoints.js').Endpoints} o.endpoints
   * @param {'auto'|'ws'|'sse'} o.mode
   * @param {any} [o.WebSocket]
   * @param {any} [o.EventSource]
   * @param {{baseMs: number, capMs: number}} o.backoff
   * @param {number} o.wsFailuresBeforeFallback
   * @param {number} o.pingIntervalMs
   * @param {TransportHooks} hooks
   */
  constructor(o, hooks) {
    this.endpoints = o.endpoints;
    this.mode = o.mode;
    this._WS = o.WebSocket;
    this._ES = o.EventSource;
    this.backoff = o.backoff;
    this.wsFailuresBeforeFallback = o.wsFailuresBeforeFallback;
    this.pingIntervalMs = o.pingIntervalMs;
    this.hooks = hooks;

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
    this._closed = false;
    this._suspended = false; // page hidden in the back/forward cache
  }

  /** Open the preferred transport. */
  start() {
    if (this.mode === 'sse') this._sseConnect();
    else this._wsConnect();
  }

  /** Whether a WebSocket is open (client messages can go over it). */
  get wsOpen() {
    return this._wsOpen;
  }

  /** Send a client message on the WebSocket; false when none is open. */
  send(obj) {
    if (!this._ws || !this._wsOpen) return false;
    try {
      this._ws.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  /** Close everything for good. */
  close() {
    this._closed = true;
    this._teardown();
  }

  /**
   * Close everything until resume(): a page with an open WebSocket is not
   * eligible for the back/forward cache.
   */
  suspend() {
    this._suspended = true;
    this._teardown();
  }

  resume() {
    this._suspended = false;
  }

  get suspended() {
    return this._suspended;
  }

  _teardown() {
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

  _wsUrl(base, token) {
    const u = base.replace(/^http/i, 'ws');
    return `${u}/v1/ws?token=${encodeURIComponent(token)}`;
  }

  async _wsConnect() {
    if (this._closed || this._suspended || this._ws) return;
    const WS = this._WS ?? globalThis.WebSocket;
    if (!WS) {
      this.hooks.log('no WebSocket available; using SSE');
      this._sseConnect();
      return;
    }
    if (!this._esOpen) this.hooks.onState('connecting', null);
    let token;
    try {
      token = await this.hooks.token();
    } catch (e) {
      this.hooks.onError(e);
      this._wsScheduleReconnect(false);
      return;
    }
    if (this._closed || this._suspended || this._ws) return;
    const base = this.endpoints.current;
    let ws;
    try {
      ws = new WS(this._wsUrl(base, token));
    } catch {
      this._wsScheduleReconnect(false, base);
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
      this.hooks.onState('open', 'ws');
      this.hooks.onOpened('ws');
    };
    ws.onopen = () => {
      this._wsOpen = true;
      this._lastRx = Date.now();
      this.send({ type: 'ping' });
      if (!this._esOpen) this.hooks.onState('open', 'ws');
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
      this.hooks.onFrame(data);
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
      if (!this._esOpen) this.hooks.onState('connecting', null);
      this._wsScheduleReconnect(healthy, base);
    };
  }

  /**
   * @param {boolean} wasHealthy the server had answered on the socket
   * @param {string} [base] the URL that failed (none: the token did)
   */
  _wsScheduleReconnect(wasHealthy, base) {
    if (this._closed || this._suspended) return;
    if (!wasHealthy) this._wsFailures++;
    if (!wasHealthy && base) {
      const next = this.endpoints.failed(base);
      if (next !== base) this.hooks.log('WebSocket to', base, 'failed; next:', next);
    }
    const delay = backoffDelay(this._wsAttempt++, this.backoff);
    if (this.mode === 'auto' && this._wsFailures >= this.wsFailuresBeforeFallback && !this._es) {
      this.hooks.log('WebSocket failed', this._wsFailures, 'times; falling back to SSE');
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
        this.hooks.log('WebSocket silent; reconnecting');
        try {
          ws.close(4000, 'silent');
        } catch {}
        ws.onclose && ws.onclose(/** @type {any} */ ({}));
        return;
      }
      this.send({ type: 'ping' });
    }, this.pingIntervalMs);
  }

  async _sseConnect() {
    if (this._closed || this._suspended || this._es) return;
    const ES = this._ES ?? globalThis.EventSource;
    if (!ES) return;
    let token;
    try {
      token = await this.hooks.token();
    } catch (e) {
      this.hooks.onError(e);
      return;
    }
    if (this._closed || this._suspended || this._es || this._wsOpen) return;
    // resume after the last event seen on any transport (the server accepts
    // ?last_event_id= for clients that cannot set the Last-Event-ID header)
    const last = this.hooks.lastEventId();
    const resume = last != null ? `&last_event_id=${last}` : '';
    const base = this.endpoints.current;
    const es = new ES(`${base}/v1/events?token=${encodeURIComponent(token)}${resume}`);
    this._es = es;
    let opened = false;
    const onEvent = (m) => {
      let data;
      try {
        data = JSON.parse(m.data);
      } catch {
        return;
      }
      if (data && !data.type && m.type && m.type !== 'message') data.type = m.type;
      if (data && data.id == null && m.lastEventId) data.id = m.lastEventId;
      this.hooks.onFrame(data);
    };
    // Named SSE events reach only listeners registered for their name: every
    // type the server publishes (stream.gap included) needs one.
    es.onmessage = onEvent;
    for (const t of EVENT_TYPES) es.addEventListener(t, onEvent);
    es.onopen = () => {
      opened = true;
      this._esOpen = true;
      this._esAttempt = 0;
      if (!this._wsOpen) {
        this.hooks.onState('open', 'sse');
        this.hooks.onOpened('sse');
      }
    };
    es.onerror = () => {
      if (this._es !== es) return;
      // The EventSource would reconnect by itself, to this URL only: the SDK
      // reconnects instead — to the next URL when this one never opened.
      try {
        es.close();
      } catch {}
      this._es = null;
      this._esOpen = false;
      if (!opened) {
        const next = this.endpoints.failed(base);
        if (next !== base) this.hooks.log('event stream at', base, 'failed; next:', next);
      }
      if (!this._wsOpen) this.hooks.onState('connecting', null);
      clearTimeout(this._esTimer);
      this._esTimer = setTimeout(() => this._sseConnect(), backoffDelay(this._esAttempt++, this.backoff));
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
}
