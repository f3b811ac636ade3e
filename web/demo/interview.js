// Interview demo: kind `interview` with per_user = "reject" — seed 003's
// "Previous session detected → Clear previous session & continue", done with
// Tether's 409 + on_conflict=takeover instead of hand-written cleanup.
import { createClient, fetchDemoToken, TetherError } from '/sdk/tether.js';

const $ = (id) => document.getElementById(id);
const el = {
  form: $('who-form'),
  user: $('user'),
  error: $('error'),
  start: $('start-btn'),
  conflict: $('conflict'),
  conflictH: $('conflict-h'),
  conflictId: $('conflict-id'),
  conflictStarted: $('conflict-started'),
  conflictSeen: $('conflict-seen'),
  takeover: $('takeover-btn'),
  cancel: $('cancel-btn'),
  live: $('live'),
  liveH: $('live-h'),
  liveId: $('live-id'),
  liveStatus: $('live-status'),
  liveElapsed: $('live-elapsed'),
  liveHb: $('live-hb'),
  end: $('end-btn'),
  status: $('status-text'),
  connDot: $('conn-dot'),
  connText: $('conn-text'),
};

const demo = {
  state: 'idle', // idle | starting | conflict | live | ended
  userId: null,
  token: null,
  client: null,
  session: null,
  sessionId: null,
  conflict: null,
  blockingSessionId: null,
  endReason: null,
  errors: [],
};
window.__demo = demo;

const KIND = 'interview';
let elapsedTimer = null;

const params = new URLSearchParams(location.search);
el.user.value = params.get('user') || localStorage.getItem('tether-interview-user') || '';

function slug(s) {
  return s.trim().toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40);
}
function say(text) {
  el.status.textContent = text;
}
function describe(e) {
  return e instanceof TetherError ? e.detail || e.message : e && e.message ? e.message : String(e);
}
function time(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : '—';
}

async function ensureClient(userId) {
  if (demo.client && demo.userId === userId) return demo.client;
  if (demo.client) demo.client.close();
  demo.userId = userId;
  demo.token = await fetchDemoToken({ userId });
  const client = createClient({ getToken: () => demo.token });
  client.on('connection', ({ state, transport }) => {
    el.connDot.className = 'dot' + (state === 'open' ? ' open' : state === 'connecting' ? ' connecting' : '');
    el.connText.textContent =
      state === 'open' ? `Live (${transport === 'ws' ? 'WebSocket' : 'SSE'})` : state === 'connecting' ? 'Reconnecting…' : 'Not connected';
  });
  client.on('error', (e) => demo.errors.push(describe(e)));
  demo.client = client;
  return client;
}

el.form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const userId = slug(el.user.value);
  if (!userId) {
    el.error.textContent = 'Please enter your name.';
    el.user.setAttribute('aria-invalid', 'true');
    el.user.focus();
    return;
  }
  el.error.textContent = '';
  el.user.removeAttribute('aria-invalid');
  localStorage.setItem('tether-interview-user', el.user.value.trim());
  el.start.disabled = true;
  demo.state = 'starting';
  say('Starting…');
  try {
    const client = await ensureClient(userId);
    const r = await client.startSession(KIND, { metadata: { demo: 'interview' } });
    if (r.conflict) showConflict(r);
    else showLive(r, 'Interview started.');
  } catch (e) {
    demo.state = 'idle';
    el.error.textContent = 'Could not start: ' + describe(e);
    el.start.disabled = false;
  }
});

function showConflict(conflict) {
  demo.state = 'conflict';
  demo.conflict = conflict;
  const s = conflict.blockingSession;
  demo.blockingSessionId = s.id;
  el.conflictId.textContent = s.id;
  el.conflictStarted.textContent = time(s.created_at);
  el.conflictSeen.textContent = time(s.last_seen_at);
  el.conflict.hidden = false;
  el.live.hidden = true;
  el.conflictH.focus();
  say('A previous interview is still open.');
}

el.takeover.addEventListener('click', async () => {
  const c = demo.conflict;
  if (!c) return;
  el.takeover.disabled = true;
  try {
    const handle = await c.takeover();
    el.conflict.hidden = true;
    demo.conflict = null;
    showLive(handle, 'Previous session cleared; new interview started.');
  } catch (e) {
    say('Could not clear it: ' + describe(e));
  } finally {
    el.takeover.disabled = false;
  }
});

el.cancel.addEventListener('click', () => {
  el.conflict.hidden = true;
  demo.conflict = null;
  demo.state = 'idle';
  el.start.disabled = false;
  el.start.focus();
  say('Nothing changed.');
});

function showLive(handle, text) {
  demo.state = 'live';
  demo.session = handle;
  demo.sessionId = handle.id;
  demo.endReason = null;
  el.live.hidden = false;
  el.start.disabled = true;
  el.liveId.textContent = handle.id;
  el.liveStatus.textContent = handle.status;
  el.liveHb.textContent = handle.heartbeatIntervalMs ? `${Math.round(handle.heartbeatIntervalMs / 1000)} s` : '—';
  const started = Date.parse(handle.session.activated_at || handle.session.created_at) || Date.now();
  clearInterval(elapsedTimer);
  elapsedTimer = setInterval(() => {
    const s = Math.floor((Date.now() - started) / 1000);
    el.liveElapsed.textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  }, 500);
  handle.on('update', (s) => (el.liveStatus.textContent = s.status));
  handle.on('restarted', ({ session, previousId }) => {
    demo.state = 'live';
    demo.sessionId = session.id;
    demo.restoredFrom = previousId;
    el.liveId.textContent = session.id;
    say('Welcome back — a new interview session was started.');
  });
  handle.on('ended', (reason) => {
    if (demo.session !== handle) return;
    demo.state = 'ended';
    demo.endReason = reason;
    clearInterval(elapsedTimer);
    el.live.hidden = true;
    el.start.disabled = false;
    say(`Interview ended (${reason}).`);
  });
  el.liveH.focus();
  say(text);
}

el.end.addEventListener('click', async () => {
  const h = demo.session;
  if (!h) return;
  el.end.disabled = true;
  try {
    await h.end();
  } catch (e) {
    say('Could not end: ' + describe(e));
  } finally {
    el.end.disabled = false;
  }
});
