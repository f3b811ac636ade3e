// A matched call's WebRTC connection, negotiated over Tether's signalling:
// joining the call, the offerer rule plus perfect negotiation, signals that
// arrive before the peer connection exists, the call timer, and the end of
// the call (event, 410, or the backup poll of the call session).

import { Emitter, RecentSet } from './emitter.js';
import { TetherError } from './errors.js';
import { isOfferer, nowMs } from './util.js';

/** @typedef {import('../tether.d.ts').Signal} Signal */
/** @typedef {import('../tether.d.ts').SessionEvent} SessionEvent */
/** @typedef {import('../tether.d.ts').ConnectCallOptions} ConnectCallOptions */

export class Call {
  /**
   * @param {import('./client.js').TetherClient} client
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

  /** @param {SessionEvent} ev */
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

