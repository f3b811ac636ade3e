// Several Tether nodes for the e2e tests: a cluster on a fresh PostgreSQL
// schema, and the same-origin proxy a browser page needs to use them.
//
// Why a proxy: the server sends no CORS headers, so a page can only call
// Tether on its own origin; a deployment that gives the SDK several node URLs
// does it through one route per node on the app's origin (`/a/` → node A,
// `/b/` → node B). This proxy is that route table, nothing more: it passes
// requests, SSE streams and WebSocket upgrades through unchanged. When a node
// is dead (or its route is blocked by the test) it drops the browser's
// connection without an answer — what the browser sees connecting to a dead
// node directly — so the SDK meets a network failure, not an HTTP status.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { extname, join, normalize } from 'node:path';
import { ARTIFACTS, REPO_DIR, startServer, waitFor } from './harness.mjs';

export const PG_BASE = process.env.TETHER_TEST_POSTGRES || 'postgres://postgres@127.0.0.1:5432/test';

/** The config every node of a test cluster shares (one secret, one API key, a short lease). */
export function clusterConfig(name, kinds = '') {
  const path = join(ARTIFACTS, `cluster-${name}.toml`);
  writeFileSync(
    path,
    `[auth]
jwt_secret = "e2e-only-secret-not-for-production"
api_keys = ["e2e-admin-key"]
demo = true

[cluster]
lease = "1s"
${kinds}`,
  );
  return path;
}

/**
 * Start `count` nodes on one fresh schema `e2e_<random>`, one after the
 * other; the first holds the lease (it is waited for before the next starts).
 * @param {string} name for logs and the config file
 * @param {{count?: number, kinds?: string}} [o] extra TOML appended to the config
 */
export async function startCluster(name, { count = 2, kinds = '' } = {}) {
  const schema = `e2e_${randomBytes(6).toString('hex')}`;
  const sep = PG_BASE.includes('?') ? '&' : '?';
  const store = `${PG_BASE}${sep}schema=${schema}`;
  const config = clusterConfig(name, kinds);
  const nodes = [];
  const cluster = {
    schema,
    nodes,
    /** The node that holds the lease, as the live ones say. */
    async leader() {
      for (const n of nodes) {
        if (n.proc.exitCode != null || n.proc.signalCode != null) continue;
        const r = await n.api('GET', '/v1/admin/cluster');
        const lead = r.status === 200 && r.body.nodes.find((x) => x.leader);
        if (lead) return nodes.find((m) => m.url === lead.advertise) ?? null;
      }
      return null;
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
      // the schema is the test's alone: drop it (psql when there is one; a
      // leftover schema harms nothing but space)
      spawnSync('psql', [PG_BASE.split('?')[0], '-q', '-c', `DROP SCHEMA IF EXISTS ${schema} CASCADE`], { stdio: 'ignore' });
    },
  };
  try {
    for (let i = 0; i < count; i++) {
      const node = await startServer(`${name}-node${i}`, { config, store });
      nodes.push(node);
      if (i === 0) {
        await waitFor(async () => (await cluster.leader()) === node, { what: 'the first node to take the lease' });
      }
    }
    await waitFor(async () => (await nodes[0].api('GET', '/v1/admin/cluster')).body.nodes.length === count, {
      what: `all ${count} nodes to register`,
    });
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}

const MIME = { '.js': 'text/javascript', '.ts': 'text/plain', '.html': 'text/html', '.json': 'application/json' };
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'upgrade', 'host']);

/**
 * The page's origin: `/` is an empty page, `/sdk/…` the SDK from web/sdk,
 * and `/<route>/…` is passed to that route's node.
 * @param {Record<string, string>} routes route name → node URL
 */
export async function startNodeProxy(routes) {
  const blocked = new Set();
  const sockets = new Set();
  const target = (url) => {
    const m = /^\/([^/?]+)(\/.*)?$/.exec(url);
    if (!m || !routes[m[1]]) return null;
    if (blocked.has(m[1])) return { blocked: true };
    const u = new URL(routes[m[1]]);
    return { host: u.hostname, port: Number(u.port), path: m[2] || '/' };
  };
  const server = http.createServer((req, res) => {
    const t = target(req.url);
    if (!t) return serveStatic(req, res);
    if (t.blocked) return req.socket.destroy();
    const headers = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k)) headers[k] = v;
    const up = http.request({ host: t.host, port: t.port, method: req.method, path: t.path, headers, agent: false }, (ur) => {
      const h = {};
      for (const [k, v] of Object.entries(ur.headers)) if (!HOP_BY_HOP.has(k)) h[k] = v;
      res.writeHead(ur.statusCode, h);
      res.flushHeaders();
      ur.pipe(res);
      // the node died mid-answer (an SSE stream): the browser's connection goes too
      ur.on('aborted', () => res.destroy());
      ur.on('error', () => res.destroy());
    });
    // no answer from the node: no answer to the browser either
    up.on('error', () => req.socket.destroy());
    req.pipe(up);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req, socket, head) => {
    const t = target(req.url);
    if (!t || t.blocked) return socket.destroy();
    const up = net.connect(t.port, t.host, () => {
      let text = `${req.method} ${t.path} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) text += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      up.write(text + '\r\n');
      if (head && head.length) up.write(head);
      socket.pipe(up);
      up.pipe(socket);
    });
    up.on('error', () => socket.destroy());
    up.on('close', () => socket.destroy());
    socket.on('error', () => up.destroy());
    socket.on('close', () => up.destroy());
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    origin,
    /** The SDK URL of a route. */
    url: (route) => `${origin}/${route}`,
    /** Refuse the route's new connections (as if its node were down). */
    block: (route) => blocked.add(route),
    unblock: (route) => blocked.delete(route),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

const SDK_DIR = join(REPO_DIR, 'web', 'sdk');

function serveStatic(req, res) {
  const path = req.url.split('?')[0];
  if (path === '/') {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    return res.end('<!doctype html><meta charset="utf-8"><title>tether nodes</title><body>nodes</body>');
  }
  const rel = normalize(path).replace(/^\/+/, '');
  if (rel.startsWith('sdk/') && !rel.includes('..')) {
    try {
      const data = readFileSync(join(SDK_DIR, rel.slice(4)));
      res.writeHead(200, { 'Content-Type': MIME[extname(rel)] || 'application/octet-stream', 'Cache-Control': 'no-cache' });
      return res.end(data);
    } catch {}
  }
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('not found');
}
