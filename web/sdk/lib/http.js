// HTTP basics shared by the client and the stand-alone helpers: where the
// server is, how an answer body is read (JSON, problem+json, or plain text),
// and the demo server's token endpoint.

import { TetherError } from './errors.js';

/** The server origin without a trailing slash; the page's origin by default. */
export function normalizeBase(baseUrl) {
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

/** The parsed JSON body, null for none; a non-JSON body becomes `{detail: text}`. */
export async function readBody(res) {
  if (res.status === 204) return null;
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { detail: text };
  }
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
