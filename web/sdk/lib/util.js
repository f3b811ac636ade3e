// Pure helpers with no state and no I/O: reconnect backoff, heartbeat
// cadence, JWT payload decoding, the offerer rule of calls, a monotonic clock.
// Exported from tether.js for tests and for apps that want the same rules.

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
 * @param {import('../tether.d.ts').KindInfo | null | undefined} kind
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
      // Node < 16 has no atob
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

/** Milliseconds from a monotonic clock where there is one (call set-up times). */
export function nowMs() {
  const p = globalThis.performance;
  return p && typeof p.now === 'function' ? p.now() : Date.now();
}
