// The page lifecycle: what the SDK does when the page goes away, comes back
// from the back/forward cache, or stays hidden.
//
// `beforeunload` is not reliable (mobile, bfcache, crashes): sessions end on
// `pagehide` with `navigator.sendBeacon`, which cannot carry an Authorization
// header — so the token goes in the body as text/plain `{"token":"…"}`. A
// crash sends nothing at all: that case is the server's job
// (disconnect_grace / idle_timeout). A page restored from the back/forward
// cache (`pageshow` with `persisted`) re-checks its sessions and starts new
// ones for those that ended.

/**
 * End a session with navigator.sendBeacon (works while the page unloads),
 * else fetch({keepalive: true}). Returns whether it was queued.
 * @param {{baseUrl: string, token: string | null, sessionId: string, fetch: typeof fetch}} o
 */
export function sendEndBeacon(o) {
  if (!o.token) return false;
  const url = `${o.baseUrl}/v1/sessions/${encodeURIComponent(o.sessionId)}/beacon`;
  const payload = JSON.stringify({ token: o.token });
  const nav = globalThis.navigator;
  try {
    if (nav && typeof nav.sendBeacon === 'function') {
      const blob = new Blob([payload], { type: 'text/plain' });
      if (nav.sendBeacon(url, blob)) return true;
    }
  } catch {}
  try {
    o.fetch(url, {
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

/** pagehide / pageshow / visibilitychange handling for one client. */
export class PageLifecycle {
  /** @param {import('./client.js').TetherClient} client */
  constructor(client) {
    this.client = client;
    this._installed = false;
    /** @type {Map<import('./session.js').SessionHandle, any>} endWhenHiddenMs timers */
    this._hiddenTimers = new Map();
  }

  /** Install the window/document listeners once (nothing outside a browser page). */
  install() {
    if (this._installed) return;
    const w = globalThis.window;
    const d = globalThis.document;
    if (!w || typeof w.addEventListener !== 'function') return;
    this._installed = true;
    w.addEventListener('pagehide', () => this._onPageHide());
    w.addEventListener('pageshow', (e) => this._onPageShow(e));
    if (d && typeof d.addEventListener === 'function') {
      d.addEventListener('visibilitychange', () => this._onVisibility(d.visibilityState));
    }
  }

  _onPageHide() {
    const client = this.client;
    for (const h of client._sessions.values()) {
      if (h.ended || h.opts.endOnPageHide === false) continue;
      h._stopHeartbeats();
      h._beaconed = true;
      client.beacon(h.id);
    }
    for (const c of client._calls.values()) c.close();
    // Close the socket too: a page with an open WebSocket is not eligible for
    // the back/forward cache, and the server would otherwise start the grace.
    client._suspend();
  }

  async _onPageShow(e) {
    const client = this.client;
    if (!client._resume(!!(e && e.persisted))) return;
    for (const h of [...client._sessions.values()]) {
      if (h.ended && !h._beaconed) continue;
      h._restoreAfterHide('pageshow').catch((err) => client._em.emit('error', err));
    }
  }

  _onVisibility(state) {
    const client = this.client;
    if (state === 'hidden') {
      for (const h of client._sessions.values()) {
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
              client.beacon(h.id);
            });
          }, ms),
        );
      }
    } else if (state === 'visible') {
      for (const t of this._hiddenTimers.values()) clearTimeout(t);
      this._hiddenTimers.clear();
      for (const h of [...client._sessions.values()]) {
        if (h._endedByHidden && h.opts.restartOnReturn !== false && h._restart) {
          h._endedByHidden = false;
          h._restoreAfterHide('visible').catch((err) => client._em.emit('error', err));
        }
      }
    }
  }
}
