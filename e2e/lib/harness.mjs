// Shared helpers for the e2e tests: start the tether server, launch Debian's
// Chromium (one OS process per simulated user), talk to the admin API.
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const E2E_DIR = resolve(here, '..');
export const REPO_DIR = resolve(E2E_DIR, '..');
export const ARTIFACTS = join(E2E_DIR, 'artifacts');
export const API_KEY = 'e2e-admin-key';
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
mkdirSync(ARTIFACTS, { recursive: true });

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  // WebRTC between two local browsers: keep plain host candidates (no mDNS
  // names) and allow the loopback interface on machines that have no other.
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll fn until it returns a truthy value; throws after timeoutMs. */
export async function waitFor(fn, { timeoutMs = 10_000, intervalMs = 100, what = 'condition' } = {}) {
  const t0 = Date.now();
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() - t0 > timeoutMs) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await sleep(intervalMs);
  }
}

export function tetherBin() {
  const bin = process.env.TETHER_BIN || join(REPO_DIR, 'target/debug/tether');
  if (!existsSync(bin)) throw new Error(`tether binary not found at ${bin} (cargo build -p tether, or set TETHER_BIN)`);
  return bin;
}

/**
 * Start `tether serve --demo --store memory --listen 127.0.0.1:0 --config e2e/tether.toml`
 * (another `store` or `config` if given) and wait for its `listening on http://HOST:PORT` line.
 * @param {string} name used for the log file under artifacts/
 */
export async function startServer(name, { config = join(E2E_DIR, 'tether.toml'), store = 'memory', extraArgs = [] } = {}) {
  const bin = tetherBin();
  const args = ['serve', '--demo', '--store', store, '--listen', '127.0.0.1:0', '--config', config, ...extraArgs];
  const log = createWriteStream(join(ARTIFACTS, `server-${name}.log`));
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' };
  delete env.TETHER_CONFIG;
  delete env.TETHER_LISTEN;
  delete env.TETHER_STORE;
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  proc.stderr.on('data', (d) => log.write(d));
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not print "listening on" within 30 s')), 30_000);
    const rl = createInterface({ input: proc.stdout });
    rl.on('line', (line) => {
      log.write(line + '\n');
      const m = /listening on (http:\/\/\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1].replace(/\/$/, ''));
      }
    });
    proc.on('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (code ${code}, signal ${sig}); see artifacts/server-${name}.log`));
    });
  });
  const server = {
    url,
    proc,
    /** Admin API call with the e2e API key. */
    async api(method, path, body) {
      const res = await fetch(url + path, {
        method,
        headers: {
          Authorization: `Bearer ${API_KEY}`,
          ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
      const text = await res.text();
      let data = null;
      try {
        data = text ? JSON.parse(text) : null;
      } catch {
        data = text;
      }
      return { status: res.status, body: data };
    },
    async session(id) {
      const r = await server.api('GET', `/v1/sessions/${encodeURIComponent(id)}`);
      if (r.status !== 200) throw new Error(`GET session ${id}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    },
    /** Kill the process (SIGKILL: a crash; it answers nothing more) and wait for it to go. */
    async kill9() {
      if (proc.exitCode != null || proc.signalCode != null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGKILL');
      await exited;
      log.end();
    },
    async stop() {
      if (proc.exitCode != null || proc.signalCode != null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
      log.end();
    },
  };
  return server;
}

/**
 * Launch Chromium as its own OS process (so it can be SIGKILLed like a crash)
 * and connect Playwright to it. Each launch gets a fresh temporary profile.
 * @param {string} label for logs
 */
export async function launchBrowser(label, { bfcache = false } = {}) {
  const bs = await chromium.launchServer({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    // Playwright turns the back/forward cache off by default; the bfcache
    // test needs it on
    ignoreDefaultArgs: bfcache ? ['--disable-back-forward-cache'] : undefined,
  });
  const pid = bs.process().pid;
  const browser = await chromium.connect(bs.wsEndpoint());
  const consoleLog = createWriteStream(join(ARTIFACTS, `browser-${label}.log`), { flags: 'a' });
  let killed = false;
  const b = {
    label,
    pid,
    browser,
    server: bs,
    async newPage(url) {
      const ctx = await browser.newContext({
        permissions: ['camera', 'microphone'],
        viewport: { width: 1280, height: 900 },
      });
      const page = await ctx.newPage();
      page.on('console', (m) => consoleLog.write(`[${label}] ${m.type()}: ${m.text()}\n`));
      page.on('pageerror', (e) => consoleLog.write(`[${label}] pageerror: ${e.stack || e}\n`));
      if (url) await page.goto(url);
      return page;
    },
    /** Crash the whole browser: SIGKILL its process group (all Chromium processes). */
    kill() {
      killed = true;
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
    },
    async close() {
      if (!killed) {
        try {
          await browser.close();
        } catch {}
        try {
          await bs.close();
        } catch {}
      } else {
        try {
          await bs.kill();
        } catch {}
      }
      consoleLog.end();
    },
  };
  return b;
}

/** Fill the demo profile form (labels as a person sees them) and press "Start matching". */
export async function startDemoUser(page, p) {
  await page.getByLabel('Name', { exact: true }).fill(p.name);
  await page.getByLabel('Age', { exact: true }).fill(String(p.age));
  await page.getByLabel('Interests', { exact: true }).fill(p.interests);
  await page.getByLabel('Min age', { exact: true }).fill(String(p.minAge));
  await page.getByLabel('Max age', { exact: true }).fill(String(p.maxAge));
  await page.getByRole('button', { name: 'Start matching' }).click();
  await page.waitForFunction(() => window.__demo && window.__demo.matchingSessionId, null, { timeout: 15_000 });
  return page.evaluate(() => ({ userId: window.__demo.userId, matchingSessionId: window.__demo.matchingSessionId }));
}

/** Evaluate in page, returning window.__demo fields. */
export function demoState(page) {
  return page.evaluate(() => {
    const d = window.__demo;
    return {
      state: d.state,
      userId: d.userId,
      matchingSessionId: d.matchingSessionId,
      callId: d.callId,
      pcState: d.pc ? d.pc.connectionState : null,
      lastCallEndReason: d.lastCallEndReason,
      errors: d.errors,
    };
  });
}

export function cleanArtifacts(prefix) {
  for (const f of ['png', 'log']) {
    const p = join(ARTIFACTS, `${prefix}.${f}`);
    if (existsSync(p)) rmSync(p);
  }
}
