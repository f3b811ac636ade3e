// Interview demo: kind `interview` with per_user = "reject" — seed 003's
// "Previous session detected → Clear previous session & continue", done with
// Tether's 409 + on_conflict=takeover instead of hand-written cleanup; and,
// once a crashed browser's interview has ended (`disconnected`, or
// `idle_timeout`), "Continue your interview" revives the same session within
// the kind's `revive_window` (on a 409 a new one starts instead). A
// `session.expiring` warning asks "Still there?".
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
  cont: $('continue'),
  contH: $('continue-h'),
  contId: $('continue-id'),
  contEnded: $('continue-ended'),
  contReason: $('continue-reason'),
  contBtn: $('continue-btn'),
  fresh: $('fresh-btn'),
  expiring: $('expiring'),
  expiringAt: $('expiring-at'),
  here: $('here-btn'),
  status: $('status-text'),
  connDot: $('conn-dot'),
  connText: $('conn-text'),
};

const demo = {
  state: 'idle', // idle | starting | conflict | continue | live | ended
  userId: null,
  token: null,
  client: null,
  session: null,
  sessionId: null,
  conflict: null,
  blockingSessionId: null,
  endReason: null,
  /** the ended session offered for "Continue your interview" */
  revivable: null,
  /** the id of the session "Continue your interview" brought back */
  revived: null,
  /** the last session.expiring of the live session */
  expiring: null,
  errors: [],
};
window.__demo = demo;

const KIND = 'interview';
/** The end reasons a revive undoes. */
const REVIVABLE = new Set(['idle_timeout', 'disconnected']);
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
    const previous = await revivableInterview(client, userId);
    if (previous) showContinue(previous);
    else await startFresh(client, 'Interview started.');
  } catch (e) {
    demo.state = 'idle';
    el.error.textContent = 'Could not start: ' + describe(e);
    el.start.disabled = false;
  }
});

async function startFresh(client, text) {
  const r = await client.startSession(KIND, { metadata: { demo: 'interview' }, onExpiring });
  if (r.conflict) showConflict(r);
  else showLive(r, text);
}

/**
 * The user's latest interview, if it ended because the browser went away
 * (`disconnected`, `idle_timeout`) less than the kind's `revive_window` ago
 * and no live one exists. Read from the server, so a crash in another
 * browser counts too.
 */
async function revivableInterview(client, userId) {
  const kinds = await client.kinds().catch(() => null);
  const windowMs = kinds?.get(KIND)?.revive_window_ms;
  if (!windowMs) return null;
  const live = await client.listSessions({ kind: KIND, status: 'live', user_id: userId, limit: 1 });
  if (live.sessions.length) return null; // still live: the conflict path offers to clear it
  const { sessions } = await client.listSessions({ kind: KIND, status: 'ended', user_id: userId, limit: 1000 });
  const latest = sessions
    .filter((s) => s.user_id === userId && s.ended_at)
    .sort((a, b) => Date.parse(b.ended_at) - Date.parse(a.ended_at))[0];
  if (!latest || !REVIVABLE.has(latest.end_reason)) return null;
  // The page's clock decides only whether to offer; the server decides the revive.
  return Date.now() - Date.parse(latest.ended_at) < windowMs ? latest : null;
}

function showContinue(s) {
  demo.state = 'continue';
  demo.revivable = s;
  el.contId.textContent = s.id;
  el.contEnded.textContent = time(s.ended_at);
  el.contReason.textContent = s.end_reason === 'disconnected' ? 'your browser disconnected' : 'no sign of life for a while';
  el.cont.hidden = false;
  el.live.hidden = true;
  el.conflict.hidden = true;
  el.contH.focus();
  say('Your previous interview can be continued.');
}

el.contBtn.addEventListener('click', async () => {
  const s = demo.revivable;
  if (!s) return;
  el.contBtn.disabled = el.fresh.disabled = true;
  try {
    const r = await demo.client.revive(s.id, { onExpiring });
    el.cont.hidden = true;
    demo.revivable = null;
    if (r.conflict) {
      showConflict(r);
      return;
    }
    demo.revived = r.id;
    showLive(r, 'Welcome back — your interview continues where it left off.');
  } catch (e) {
    if (e instanceof TetherError && e.status === 409) {
      // too late, or no longer revivable: start fresh instead
      el.cont.hidden = true;
      demo.revivable = null;
      try {
        await startFresh(demo.client, `Could not continue (${describe(e)}); a new interview was started.`);
      } catch (e2) {
        say('Could not start: ' + describe(e2));
        el.start.disabled = false;
      }
    } else {
      say('Could not continue: ' + describe(e));
    }
  } finally {
    el.contBtn.disabled = el.fresh.disabled = false;
  }
});

el.fresh.addEventListener('click', async () => {
  el.cont.hidden = true;
  demo.revivable = null;
  try {
    await startFresh(demo.client, 'New interview started.');
  } catch (e) {
    say('Could not start: ' + describe(e));
    el.start.disabled = false;
  }
});

/** `session.expiring`: a deadline is `warn_before` away — ask "still there?". */
function onExpiring(ev, handle) {
  if (demo.session !== handle) return;
  demo.expiring = ev;
  el.expiringAt.textContent = time(ev.deadline);
  el.expiring.hidden = false;
  say(`Still there? The interview ends at ${time(ev.deadline)} unless it hears from you.`);
}

el.here.addEventListener('click', async () => {
  const h = demo.session;
  if (!h) return;
  try {
    await h.heartbeat();
    el.expiring.hidden = true;
    demo.expiring = null;
    say('Thanks — the interview goes on.');
  } catch (e) {
    say('Could not reach the server: ' + describe(e));
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
  el.expiring.hidden = true;
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
    el.expiring.hidden = true;
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
