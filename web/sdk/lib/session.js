// A session the SDK keeps alive for the app: heartbeats at the kind's pace,
// the end with its reason (from an event, a 410, or a re-read), the warning
// before a deadline (`session.expiring`, so the app can ask "still there?"),
// a revive that brings it back, restarts after a bfcache restore or a return
// to a visible page; and the Conflict answer of a `per_user = "reject"` kind.

import { Emitter } from './emitter.js';
import { TetherError } from './errors.js';
import { heartbeatIntervalFor } from './util.js';
import { isLive } from './vocabulary.js';

/** @typedef {import('../tether.d.ts').Session} Session */
/** @typedef {import('../tether.d.ts').SessionEvent} SessionEvent */
/** @typedef {import('../tether.d.ts').ExpiringEvent} ExpiringEvent */
/** @typedef {import('../tether.d.ts').SessionOptions} SessionOptions */
/** @typedef {import('../tether.d.ts').MatchingPrefs} MatchingPrefs */

export class Conflict {
  /**
   * @param {import('./client.js').TetherClient} client
   * @param {string} kind
   * @param {SessionOptions} opts
   * @param {Session} blockingSession
   * @param {TetherError} error
   * @param {(() => Promise<SessionHandle | Conflict>) | null} [retry] what takeover() does
   *   (default: start a session of `kind` with on_conflict "takeover")
   */
  constructor(client, kind, opts, blockingSession, error, retry = null) {
    /** @type {true} */
    this.conflict = true;
    this.kind = kind;
    /** @type {Session} the live session that blocks a new (or revived) one */
    this.blockingSession = blockingSession;
    this.error = error;
    this._client = client;
    this._opts = opts;
    this._retry = retry;
  }
  /** End the blocking session (`taken_over`) and start a new one (or revive, for a revive's conflict). */
  async takeover() {
    const r = this._retry
      ? await this._retry()
      : await this._client.startSession(this.kind, { ...this._opts, onConflict: 'takeover' });
    return /** @type {SessionHandle} */ (r);
  }
}

export class SessionHandle {
  /**
   * @param {import('./client.js').TetherClient} client
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
    /** @type {number | null} id of the newest server event applied */
    this._lastEventId = null;
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
   * "expiring" (event: a deadline is `warn_before` away) · "revived" (session) ·
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
      if (s && 'id' in s) this._update(s);
      // a minimal answer (204 + Tether-Expires-At): only the deadline moved
      else if (s && !this.ended) this._update({ ...this.session, expires_at: s.expires_at });
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

  /** @param {SessionEvent} ev */
  _onEvent(ev) {
    // An event older than one already applied (replayed from the history
    // after a reconnect while the new connection delivered later ones): the
    // app hears it, but it does not roll the session back.
    const evId = ev.id != null ? Number(ev.id) : NaN;
    if (Number.isFinite(evId)) {
      if (this._lastEventId != null && evId < this._lastEventId) {
        this._em.emit('event', ev);
        return;
      }
      this._lastEventId = evId;
    }
    if (ev.type === 'session.revived') {
      this._revived(ev.session);
      this._em.emit('event', ev);
      return;
    }
    if (ev.session) this._update(ev.session);
    this._em.emit('event', ev);
    if (ev.type === 'session.ended') {
      this._markEnded(ev.reason ?? ev.session?.end_reason ?? 'ended', ev.session ?? null);
    } else if (ev.type === 'session.expiring' && !this.ended) {
      const warning = /** @type {ExpiringEvent} */ (ev);
      if (typeof this.opts.onExpiring === 'function') {
        try {
          this.opts.onExpiring(warning, /** @type {any} */ (this));
        } catch (e) {
          if (globalThis.console) console.error('tether onExpiring error', e);
        }
      }
      this._em.emit('expiring', warning);
    }
  }

  /**
   * The session is live again (POST /revive, by this page or elsewhere):
   * heartbeats resume and the app hears "revived".
   * @param {Session} s
   */
  _revived(s) {
    if (!s || s.id !== this.id || !isLive(s)) return;
    const wasEnded = this.ended;
    this.session = s;
    this.ended = false;
    this.endReason = null;
    this._beaconed = false;
    this._em.emit('update', s);
    if (!wasEnded) return;
    this._startHeartbeats();
    this._em.emit('revived', s);
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
    this._lastEventId = null;
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
