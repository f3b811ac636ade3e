// The server URLs a client may use and which one is current: option `urls`
// (the nodes of a cluster, each reachable on its own; other origins need the
// server's `cors_origins` to allow the page, as it does by default), or
// `baseUrl` as a list of one. HTTP
// requests, the event connection and the unload beacon all go to the current
// URL; a connection to it failing moves every one of them to the next.
//
// The retry rule of HTTP requests (why: a request that reached a node may
// have been applied there before the node died, and doing it twice is not
// always harmless — a second start would supersede or take over the first):
// when fetch rejects (no answer at all: connection refused, reset, DNS), the
// current URL moves on, and the request is sent once more to the new current
// URL only when
//   - it is safe to repeat: GET, HEAD, PUT, DELETE, OPTIONS, and the POSTs
//     whose repetition changes nothing more than the first did (a session's
//     or participant's heartbeat, ending a session or a call), or the caller
//     said `idempotent: true`; or
//   - the SDK knows it never reached a server: the error says the connection
//     was refused or the name did not resolve (Node's fetch tells; browsers'
//     fetch does not tell refused from reset, so there only the first case
//     applies).
// Otherwise the TetherError (status 0) goes to the caller, and its next
// request goes to the next URL. An answer — any status — never moves it.

/**
 * The list of server URLs from the options: `urls` wins over `baseUrl`; each
 * is normalised; duplicates are dropped.
 * @param {{urls?: string[], baseUrl?: string}} o
 * @param {(u: string | undefined) => string} normalize
 * @returns {string[]}
 */
export function urlsFrom(o, normalize) {
  if (o.urls != null) {
    if (!Array.isArray(o.urls) || o.urls.length === 0 || !o.urls.every((u) => typeof u === 'string' && u)) {
      throw new TypeError('createClient: urls must be a non-empty array of URLs');
    }
    return [...new Set(o.urls.map((u) => normalize(u)))];
  }
  return [normalize(o.baseUrl)];
}

export class Endpoints {
  /** @param {string[]} urls normalised, at least one */
  constructor(urls) {
    /** @type {readonly string[]} */
    this.urls = Object.freeze([...urls]);
    this._index = 0;
  }

  /** Where requests and connections go now. */
  get current() {
    return this.urls[this._index];
  }

  /**
   * A connection to `url` failed: when it is still the current URL, the next
   * one becomes current (a failure reported late, for a URL already left,
   * changes nothing). Returns the current URL.
   * @param {string} url
   */
  failed(url) {
    if (this.urls.length > 1 && this.urls[this._index] === url) {
      this._index = (this._index + 1) % this.urls.length;
    }
    return this.current;
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS']);
// POSTs whose repetition is harmless: a heartbeat moves the deadline from
// now again; ending an ended session or call answers it unchanged.
const SAFE_POSTS = [
  /^\/v1\/sessions\/[^/]+\/heartbeat$/,
  /^\/v1\/sessions\/[^/]+\/participants\/me\/heartbeat$/,
  /^\/v1\/sessions\/[^/]+\/end$/,
  /^\/v1\/calls\/[^/]+\/end$/,
];

/**
 * Whether a request may be sent again after it got no answer (it may have
 * been applied).
 * @param {string} method
 * @param {string} path without the base URL, e.g. "/v1/sessions/s1/heartbeat?x"
 */
export function safeToRepeat(method, path) {
  const m = String(method).toUpperCase();
  if (SAFE_METHODS.has(m)) return true;
  if (m !== 'POST') return false;
  const p = String(path).split('?')[0];
  return SAFE_POSTS.some((re) => re.test(p));
}

/** fetch rejected without an answer (not an abort by the caller). */
export function isNetworkError(e) {
  return !!e && e.name !== 'AbortError' && e.name !== 'TimeoutError';
}

const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH']);

/**
 * Whether a fetch error proves the request never reached a server: the
 * connection was refused or the host not found. Node's fetch (undici) says so
 * in `cause.code` (or in the `errors` of an AggregateError cause, when it
 * tried several addresses); browsers never say, so this is false there.
 */
export function neverReachedServer(e) {
  const codes = [];
  const collect = (x, depth) => {
    if (!x || typeof x !== 'object' || depth > 3) return;
    if (typeof x.code === 'string') codes.push(x.code);
    if (Array.isArray(x.errors)) x.errors.forEach((y) => collect(y, depth + 1));
    collect(x.cause, depth + 1);
  };
  collect(e, 0);
  return codes.length > 0 && codes.every((c) => NOT_SENT_CODES.has(c));
}
