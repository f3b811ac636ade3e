// Speed-dating demo on Tether: profile -> matching pool -> 3-minute video call
// -> Skip / Continue -> mutual matches. Uses only the SDK at /sdk/tether.js.
import { createClient, fetchDemoToken, TetherError } from '/sdk/tether.js';

const $ = (id) => document.getElementById(id);
const el = {
  form: $('profile-form'),
  name: $('name'),
  age: $('age'),
  bio: $('bio'),
  interests: $('interests'),
  minAge: $('min-age'),
  maxAge: $('max-age'),
  formError: $('form-error'),
  start: $('start-btn'),
  stop: $('stop-btn'),
  status: $('status-text'),
  stateDot: $('state-dot'),
  connDot: $('conn-dot'),
  connText: $('conn-text'),
  callCard: $('call-card'),
  partnerName: $('partner-name'),
  partnerBio: $('partner-bio'),
  partnerScore: $('partner-score'),
  partnerInterests: $('partner-interests'),
  remoteVideo: $('remote-video'),
  remoteLabel: $('remote-label'),
  localVideo: $('local-video'),
  countdown: $('countdown'),
  timerLabel: $('timer-label'),
  endCall: $('end-call-btn'),
  decision: $('decision'),
  decisionH: $('decision-h'),
  decisionText: $('decision-text'),
  skip: $('skip-btn'),
  cont: $('continue-btn'),
  matchesList: $('matches-list'),
  matchesEmpty: $('matches-empty'),
};

/** State exposed for end-to-end tests and curious developers. */
const demo = {
  state: 'idle', // idle | starting | matching | in-call | deciding | stopped
  userId: null,
  token: null,
  client: null,
  matching: null,
  matchingSessionId: null,
  callId: null,
  call: null,
  pc: null,
  match: null,
  localStream: null,
  remoteStream: null,
  lastCallEndReason: null,
  partnerLeft: false,
  callsEnded: [],
  mutual: [],
  events: [],
  errors: [],
};
window.__demo = demo;

let countdownTimer = null;
let callMaxMs = 180_000;
let profileKey = null;

function setState(state, text) {
  demo.state = state;
  if (text != null) el.status.textContent = text;
  el.stateDot.className = 'dot' + (state === 'matching' ? ' connecting pulse' : state === 'in-call' ? ' open' : '');
  const busy = state === 'starting' || state === 'matching' || state === 'in-call' || state === 'deciding';
  el.start.disabled = busy;
  el.stop.hidden = !busy;
  for (const i of [el.name, el.age, el.bio, el.interests, el.minAge, el.maxAge]) i.disabled = busy;
}

function slug(s) {
  return (
    s
      .normalize('NFKD')
      .replace(/[\u0300-\u036f]/g, '')
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 24) || 'user'
  );
}

function randomSuffix() {
  const a = new Uint8Array(3);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
}

function fail(msg, field) {
  el.formError.textContent = msg;
  for (const i of [el.name, el.age, el.minAge, el.maxAge]) i.removeAttribute('aria-invalid');
  if (field) {
    field.setAttribute('aria-invalid', 'true');
    field.focus();
  }
}

function readForm() {
  const name = el.name.value.trim();
  const age = Number(el.age.value);
  const minAge = Number(el.minAge.value);
  const maxAge = Number(el.maxAge.value);
  const interests = el.interests.value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!name) return fail('Please enter your name.', el.name);
  if (!Number.isInteger(age) || age < 18 || age > 120) return fail('Age must be a whole number from 18 to 120.', el.age);
  if (!Number.isInteger(minAge) || minAge < 18) return fail('Min age must be 18 or more.', el.minAge);
  if (!Number.isInteger(maxAge) || maxAge < minAge) return fail('Max age must be at least the min age.', el.maxAge);
  fail('');
  return { name, age, bio: el.bio.value.trim(), interests, minAge, maxAge };
}

function describeError(e) {
  if (e instanceof TetherError) return e.detail || e.message || `HTTP ${e.status}`;
  return e && e.message ? e.message : String(e);
}

async function getCamera() {
  if (demo.localStream) return demo.localStream;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return null;
  try {
    demo.localStream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  } catch {
    try {
      demo.localStream = await navigator.mediaDevices.getUserMedia({ video: true });
    } catch {
      demo.localStream = null;
    }
  }
  if (demo.localStream) el.localVideo.srcObject = demo.localStream;
  return demo.localStream;
}

function ensureClient() {
  if (demo.client) return demo.client;
  const client = createClient({ getToken: () => demo.token });
  demo.client = client;
  client.on('connection', ({ state, transport }) => {
    el.connDot.className = 'dot' + (state === 'open' ? ' open' : state === 'connecting' ? ' connecting' : '');
    el.connText.textContent =
      state === 'open' ? `Live (${transport === 'ws' ? 'WebSocket' : 'SSE'})` : state === 'connecting' ? 'Reconnecting…' : 'Not connected';
  });
  client.on('*', (ev) => {
    demo.events.push({ type: ev.type, at: ev.at, session: ev.session && ev.session.id, reason: ev.reason });
    if (demo.events.length > 200) demo.events.shift();
  });
  client.on('error', (e) => demo.errors.push(describeError(e)));
  client.onMatch((match) => onMatch(match).catch((e) => showError(e)));
  client.on('match.mutual', (ev) => {
    const who = ev.match && (ev.match.name || ev.match.user_id);
    if (who && demo.state === 'matching') el.status.textContent = `It's a match with ${who}! Looking for your next match…`;
    refreshMatches();
  });
  client.kinds().then((k) => {
    const call = k.get('call');
    if (call && call.max_duration_ms) {
      callMaxMs = call.max_duration_ms;
      if (!demo.call || !demo.call.endsAt) el.countdown.textContent = fmt(callMaxMs);
    }
  }).catch(() => {});
  return client;
}

function showError(e) {
  demo.errors.push(describeError(e));
  el.status.textContent = 'Something went wrong: ' + describeError(e);
}

el.form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const p = readForm();
  if (!p) return;
  setState('starting', 'Getting ready…');
  try {
    const key = JSON.stringify([p.name]);
    if (!demo.token || profileKey !== key) {
      demo.userId = `${slug(p.name)}-${randomSuffix()}`;
      demo.token = await fetchDemoToken({ userId: demo.userId });
      profileKey = key;
    }
    const client = ensureClient();
    // ask for the camera while we still have the user's click
    const cam = getCamera();
    await client.putProfile(demo.userId, { name: p.name, age: p.age, bio: p.bio || null, interests: p.interests });
    await cam;
    const matching = await client.startMatching({
      min_age: p.minAge,
      max_age: p.maxAge,
      preferred_interests: p.interests,
    });
    demo.matching = matching;
    demo.matchingSessionId = matching.id;
    matching.on('ended', (reason) => {
      if (demo.matching !== matching) return;
      closeCall();
      setState('stopped', `Matching stopped (${reason}). Press “Start matching” to go again.`);
    });
    matching.on('restarted', ({ session }) => {
      demo.matchingSessionId = session.id;
      setState('matching', 'Back in the pool — looking for a match…');
    });
    if (demo.state === 'starting') {
      setState(
        'matching',
        demo.localStream ? 'Looking for a match…' : 'Looking for a match… (no camera: you will only receive video)',
      );
    }
    refreshMatches();
  } catch (e) {
    setState('idle');
    fail('Could not start: ' + describeError(e));
  }
});

el.stop.addEventListener('click', async () => {
  const m = demo.matching;
  demo.matching = null;
  closeCall();
  hideCall();
  setState('stopped', 'You left the matching pool.');
  if (m) await m.end().catch(() => {});
  el.start.focus();
});

async function onMatch(match) {
  // a match may arrive while POST /v1/matching/start is still answering
  // (pairing happens when a user enters the pool), so don't wait for it
  if (demo.state === 'idle' || demo.state === 'stopped') return;
  if (demo.matching && demo.matching.ended) return;
  if (demo.call && !demo.call.ended) {
    if (demo.call.callId === match.call_id) return;
    demo.call.close();
  }
  demo.match = match;
  demo.callId = match.call_id;
  demo.partnerLeft = false;
  demo.remoteStream = null;
  const partner = match.partner || {};
  el.partnerName.textContent = `${partner.name ?? partner.user_id}${partner.age ? ', ' + partner.age : ''}`;
  el.partnerBio.textContent = partner.bio || '';
  const score = Number(match.compatibility_score);
  el.partnerScore.textContent = isFinite(score) ? `${Math.round(score <= 1 ? score * 100 : score)}%` : '—';
  el.partnerInterests.replaceChildren(
    ...(partner.interests || []).map((i) => Object.assign(document.createElement('li'), { textContent: i })),
  );
  el.remoteVideo.srcObject = null;
  el.remoteLabel.textContent = 'Connecting…';
  el.remoteLabel.hidden = false;
  el.decision.hidden = true;
  el.endCall.hidden = false;
  el.endCall.disabled = false;
  el.countdown.textContent = fmt(callMaxMs);
  el.timerLabel.textContent = 'Waiting for your match to join';
  el.callCard.hidden = false;
  setState('in-call', `Matched with ${partner.name ?? 'someone'} — connecting…`);

  const call = await demo.client.connectCall({
    callId: match.call_id,
    localStream: demo.localStream,
    iceServers: [],
  });
  if (demo.callId !== match.call_id) {
    call.close();
    return;
  }
  demo.call = call;
  demo.pc = call.pc;
  if (call.ended) {
    onCallEnded(call, call.endReason);
    return;
  }
  call.on('remotestream', (stream) => {
    demo.remoteStream = stream;
    if (el.remoteVideo.srcObject !== stream) el.remoteVideo.srcObject = stream;
    el.remoteVideo.play().catch(() => {});
  });
  if (call.remoteStream && call.remoteStream.getTracks().length) {
    demo.remoteStream = call.remoteStream;
    el.remoteVideo.srcObject = call.remoteStream;
  }
  call.on('state', (st) => {
    if (st === 'connected') {
      el.remoteLabel.textContent = partner.name ?? 'Partner';
      el.status.textContent = `In a call with ${partner.name ?? 'your match'}.`;
    } else if (st === 'disconnected' || st === 'failed') {
      el.remoteLabel.textContent = 'Connection problem…';
    }
  });
  call.on('timer', () => startCountdown(call));
  call.on('ended', (reason) => onCallEnded(call, reason));
  if (call.endsAt) startCountdown(call);
}

function fmt(ms) {
  const s = Math.ceil(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function startCountdown(call) {
  if (!call.timerStarted) return;
  el.timerLabel.textContent = 'Time left';
  clearInterval(countdownTimer);
  const tick = () => {
    const left = call.remainingMs();
    if (left == null) return;
    el.countdown.textContent = fmt(left);
    // announce the last ten seconds once to screen readers
    el.countdown.setAttribute('aria-live', left <= 10_000 ? 'polite' : 'off');
  };
  tick();
  countdownTimer = setInterval(tick, 250);
}

const END_TEXT = {
  partner_left: 'Your partner left the call.',
  max_duration: "Time's up!",
  ended: 'The call ended.',
  waiting_timeout: "Your match didn't join in time.",
  closed: 'The call was closed.',
  admin: 'The call was ended by an administrator.',
};

function onCallEnded(call, reason) {
  if (demo.call !== call && demo.callId !== call.callId) return;
  clearInterval(countdownTimer);
  demo.lastCallEndReason = reason;
  demo.partnerLeft = reason === 'partner_left';
  demo.callsEnded.push({ callId: call.callId, reason, at: Date.now(), wasActive: call.wasActive });
  el.remoteVideo.srcObject = null;
  el.remoteLabel.textContent = 'Call ended';
  el.endCall.hidden = true;
  const text = END_TEXT[reason] ?? `The call ended (${reason}).`;
  if (!demo.matching || demo.matching.ended) {
    el.status.textContent = text;
    return;
  }
  if (call.wasActive) {
    setState('deciding', `${text} Skip or continue?`);
    el.decisionText.textContent = `${text} Continue if you'd like to match; both of you have to.`;
    el.decision.hidden = false;
    el.decisionH.focus();
  } else {
    hideCall();
    setState('matching', `${text} Looking for another match…`);
  }
}

function closeCall() {
  clearInterval(countdownTimer);
  if (demo.call) demo.call.close();
}

function hideCall() {
  el.callCard.hidden = true;
  el.decision.hidden = true;
}

el.endCall.addEventListener('click', async () => {
  const call = demo.call;
  if (!call) return;
  el.endCall.disabled = true;
  try {
    await call.hangup();
  } catch (e) {
    showError(e);
    el.endCall.disabled = false;
  }
});

async function decide(decision) {
  const callId = demo.callId;
  if (!callId) return;
  el.skip.disabled = el.cont.disabled = true;
  try {
    await demo.client.decide(callId, decision);
    hideCall();
    demo.call = null;
    demo.pc = null;
    if (demo.matching && !demo.matching.ended) {
      setState('matching', decision === 'continue' ? 'Saved. Looking for your next match…' : 'Skipped. Looking for your next match…');
    }
    refreshMatches();
  } catch (e) {
    showError(e);
  } finally {
    el.skip.disabled = el.cont.disabled = false;
  }
}
el.skip.addEventListener('click', () => decide('skip'));
el.cont.addEventListener('click', () => decide('continue'));

async function refreshMatches() {
  if (!demo.client) return;
  try {
    const list = await demo.client.matches();
    demo.mutual = list;
    el.matchesList.replaceChildren(
      ...list.map((m) => {
        const li = document.createElement('li');
        const when = m.matched_at ? new Date(m.matched_at).toLocaleTimeString() : '';
        li.innerHTML = '<strong></strong> <span class="muted"></span>';
        li.firstChild.textContent = m.name ?? m.user_id;
        li.lastChild.textContent = when ? `· matched at ${when}` : '';
        return li;
      }),
    );
    el.matchesEmpty.hidden = list.length > 0;
  } catch {}
}
