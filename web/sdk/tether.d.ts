// Type declarations for the Tether browser SDK (/sdk/tether.js).
//
// The three unions of the wire's words below (EventType, SessionStatus,
// EndReason) are exactly the server's `EventType`, `Status` and `EndReason`
// schemas of /openapi.json; e2e/tests/vocabulary.test.mjs checks them.

export declare const VERSION: string;
/** Every event type the server publishes, in the order of `EventType`. */
export declare const EVENT_TYPES: readonly EventType[];

/** Types of the events the server publishes. */
export type EventType =
  | 'session.started'
  | 'session.activated'
  | 'session.completing'
  | 'session.ended'
  | 'session.expiring'
  | 'session.revived'
  | 'participant.joined'
  | 'participant.left'
  | 'match.found'
  | 'match.mutual'
  | 'call.signal'
  | 'stream.gap';

/** The event types that concern one session (all but `stream.gap`). */
export type SessionEventType = Exclude<EventType, 'stream.gap'>;

export type SessionStatus = 'waiting' | 'active' | 'completing' | 'ended';

/** Why a session ended, as the server says it. */
export type EndReason =
  | 'ended'
  | 'closed'
  | 'superseded'
  | 'taken_over'
  | 'idle_timeout'
  | 'max_duration'
  | 'waiting_timeout'
  | 'completing_timeout'
  | 'disconnected'
  | 'parent_ended'
  | 'partner_left'
  | 'admin';

/**
 * What a handle or call reports when it ends: the server's reason, or
 * `'gone'` when the server no longer knows the session (404 — e.g. a server
 * on the memory store restarted).
 */
export type EndedReason = EndReason | 'gone';

export interface Participant {
  id: string;
  name: string | null;
  joined_at: string;
  last_seen_at: string | null;
  left_at: string | null;
}

export interface Session {
  id: string;
  kind: string;
  user_id: string;
  status: SessionStatus;
  created_at: string;
  activated_at: string | null;
  last_seen_at: string | null;
  expires_at: string | null;
  ended_at: string | null;
  end_reason: EndReason | null;
  parent_id: string | null;
  metadata: Record<string, unknown>;
  participants: Participant[];
  [extra: string]: unknown;
}

export interface KindInfo {
  name: string;
  idle_timeout_ms: number | null;
  max_duration_ms: number | null;
  waiting_timeout_ms: number | null;
  disconnect_grace_ms: number | null;
  /** `session.expiring` comes this long before each deadline (null: no warning). */
  warn_before_ms?: number | null;
  /** How long after an `idle_timeout` / `disconnected` end a session may be revived (null: never). */
  revive_window_ms?: number | null;
  per_user: 'replace' | 'reject' | 'allow';
  quorum: number;
  presence: 'owner' | 'any';
}

export interface Partner {
  user_id: string;
  name: string;
  age: number;
  bio: string | null;
  interests: string[];
}

export interface Match {
  call_id: string;
  partner: Partner;
  compatibility_score: number;
}

export interface Signal {
  type: 'offer' | 'answer' | 'ice-candidate';
  data: any;
  from?: string;
  at?: string;
}

export interface MutualMatch {
  call_id: string;
  /** The other user. */
  user_id: string;
  name: string | null;
  matched_at: string;
}

/** An event about one session (every type but `stream.gap`). */
export interface SessionEvent {
  /**
   * The server's sequence number (the SSE `id:`). Absent only on a
   * `session.ended` the SDK recreated from a re-read after a reconnect or a
   * gap (`resynced: true`).
   */
  id?: number;
  type: SessionEventType;
  at: string;
  /** The session after the change; for `match.*` and `call.signal`, the call session. */
  session: Session;
  /** `session.ended`: why it ended; `session.expiring`: the end the coming deadline would bring. */
  reason?: EndReason;
  /** `session.expiring` only: when the session ends unless activity moves the deadline. */
  deadline?: string;
  /** `participant.joined` / `participant.left` only. */
  participant?: Participant;
  /** `match.found`: a Match; `match.mutual`: a MutualMatch. */
  match?: Match | MutualMatch;
  /** `call.signal` only. */
  signal?: Signal;
  /** Set by the SDK on a `session.ended` it recreated from a re-read. */
  resynced?: true;
  /**
   * Set by the SDK on a server event it read from the session's history after
   * its WebSocket reopened (the WebSocket has no resume point): it happened
   * while the client was not connected. It carries its server `id`.
   */
  replayed?: true;
}

/**
 * The server skipped the events with ids `from..=to` for this client (it fell
 * behind the resume log, or resumed from before it). The SDK has then already
 * started re-reading every session it tracks: those that ended meanwhile get a
 * `session.ended` (with `resynced: true`) as if the event had arrived.
 */
export interface StreamGapEvent {
  /** The SSE `id:` of the notice (equal to `to`); absent on the WebSocket. */
  id?: number;
  type: 'stream.gap';
  from: number;
  to: number;
}

export type TetherEvent = SessionEvent | StreamGapEvent;

/**
 * `session.expiring`: a deadline that would end the session is the kind's
 * `warn_before` away (published once per deadline). A heartbeat moves an idle
 * deadline, and the new one is warned of in turn; `max_duration` cannot be moved.
 */
export type ExpiringEvent = SessionEvent & { type: 'session.expiring'; deadline: string; reason: EndReason };

export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  blocking_session?: Session;
  end_reason?: EndReason;
  [extra: string]: unknown;
}

export declare class TetherError extends Error {
  constructor(status: number, problem: any, message?: string);
  /** HTTP status; 0 for a network failure. */
  status: number;
  problem: Problem;
  detail: string | null;
}

export interface ClientOptions {
  /** Server origin, e.g. "https://tether.example.com". Default: the page's origin. Same as `urls: [baseUrl]`. */
  baseUrl?: string;
  /**
   * Several server URLs (the nodes of a cluster), used in turn: everything
   * goes to the current one; when a connection to it fails (a request gets
   * no answer, or the event connection cannot open) the next becomes
   * current. The event connection resumes there (SSE with the last event id;
   * a reopened WebSocket replays each tracked session's missed events from
   * its history). A request that got no answer is sent once more to the next
   * URL only when that is safe: GET/PUT/DELETE, heartbeats, ending a session
   * or call, `request(…, {idempotent: true})`, or an error proving it never
   * reached a server (connection refused — only Node's fetch tells; in a
   * browser a start, revive, decision… rejects with status 0 and the app
   * decides). Wins over `baseUrl`. In a browser the URLs may be other origins
   * while the server's `cors_origins` allows the page's (any, by default).
   */
  urls?: string[];
  /** Returns the bearer token (a user JWT or an API key). Called for every request/connection. */
  getToken: () => string | Promise<string>;
  /** Own user id; default: the `sub` of the token. Needed for calls. */
  userId?: string;
  /** 'auto' (WebSocket, SSE after repeated failures), 'ws', 'sse' or 'none' (HTTP only). */
  transport?: 'auto' | 'ws' | 'sse' | 'none';
  /** Failed WebSocket opens in a row before bridging with SSE (default 3). */
  wsFailuresBeforeFallback?: number;
  /** Reconnect backoff: full jitter, base 250 ms, cap 10 s by default. */
  backoff?: { baseMs?: number; capMs?: number };
  /** WebSocket keep-alive ping (default 20 s). */
  pingIntervalMs?: number;
  /** Install pagehide/pageshow/visibilitychange handlers (default true). */
  lifecycle?: boolean;
  debug?: boolean;
  /**
   * Called when the server skipped events for this client (`stream.gap`, on
   * either transport), before the SDK re-reads what it tracks; the same
   * notice goes to `on('stream.gap')` and `on('*')` listeners.
   */
  onGap?: (gap: StreamGapEvent) => void;
  fetch?: typeof fetch;
  WebSocket?: any;
  EventSource?: any;
  RTCPeerConnection?: any;
}

export interface SessionOptions {
  metadata?: Record<string, unknown>;
  parentId?: string;
  /** API key clients only: act for this user. */
  userId?: string;
  /** 'takeover': end a blocking session (taken_over) instead of answering a conflict. */
  onConflict?: 'takeover';
  /** Send heartbeats (default true). */
  heartbeat?: boolean;
  /** Override the interval derived from the kind (idle/3, min 1 s; 20 s without idle timeout). */
  heartbeatIntervalMs?: number;
  /** End with sendBeacon on pagehide (default true). */
  endOnPageHide?: boolean;
  /** Opt-in: end when the page stays hidden this long (cancelled if it becomes visible). */
  endWhenHiddenMs?: number | null;
  /** After endWhenHiddenMs ended it, start a new one when the page is visible again (default true). */
  restartOnReturn?: boolean;
  /** After a bfcache restore, start a new session if this one ended (default true). */
  restartOnRestore?: boolean;
  /** How long to wait for the event connection before creating the session (default 3000). */
  connectTimeoutMs?: number;
  /**
   * Called on `session.expiring` for this session (the kind's `warn_before`
   * ahead of a deadline): e.g. ask "still there?" and call `handle.heartbeat()`.
   */
  onExpiring?: (ev: ExpiringEvent, handle: SessionHandle) => void;
}

export interface MatchingPrefs {
  min_age?: number;
  max_age?: number;
  minAge?: number;
  maxAge?: number;
  preferred_interests?: string[];
  preferredInterests?: string[];
  personality_weight?: number;
  personalityWeight?: number;
}

export interface ConnectCallOptions {
  callId: string;
  localStream?: MediaStream | null;
  iceServers?: RTCIceServer[];
  /** Extra RTCConfiguration fields. */
  rtcConfig?: RTCConfiguration;
  /** Default: from the match.found event, else from the call session. */
  partnerId?: string;
  /** Call POST /v1/calls/{id}/join first (default true). */
  join?: boolean;
  /** Backup poll of the call session (default 3000 ms). */
  pollIntervalMs?: number;
}

type Unsubscribe = () => void;

export interface SessionEventMap {
  ended: (reason: EndedReason, session: Session) => void;
  update: (session: Session) => void;
  event: (ev: SessionEvent) => void;
  /** A deadline is `warn_before` away (`session.expiring`). */
  expiring: (ev: ExpiringEvent) => void;
  /** The ended session is live again (revived here or elsewhere); heartbeats resumed. */
  revived: (session: Session) => void;
  restarted: (info: { previousId: string; session: Session; why: 'pageshow' | 'visible' }) => void;
  error: (err: unknown) => void;
}

export declare class SessionHandle {
  readonly conflict: false;
  readonly client: TetherClient;
  /** Current session id (changes if the SDK restarted the session after a bfcache restore). */
  id: string;
  kind: string;
  session: Session;
  ended: boolean;
  endReason: EndedReason | null;
  heartbeatIntervalMs: number | null;
  superseded?: string[];
  prefs?: MatchingPrefs;
  readonly status: SessionStatus;
  on<K extends keyof SessionEventMap>(type: K, fn: SessionEventMap[K]): Unsubscribe;
  heartbeat(): Promise<Session>;
  refresh(): Promise<Session>;
  end(reason?: string): Promise<Session>;
  complete(): Promise<Session>;
  /** End it now with sendBeacon (what pagehide does). */
  beacon(): boolean;
}

export declare class Conflict {
  readonly conflict: true;
  kind: string;
  /** The live session that blocks a new (or revived) one (per_user = "reject"). */
  blockingSession: Session;
  error: TetherError;
  /** End the blocking session (`taken_over`) and start a new one (for a revive's conflict: revive). */
  takeover(): Promise<SessionHandle>;
}

export interface CallEventMap {
  remotestream: (stream: MediaStream) => void;
  track: (ev: RTCTrackEvent) => void;
  state: (state: RTCPeerConnectionState) => void;
  connected: (info: { setupMs: number }) => void;
  timer: (info: { endsAt: Date; started: boolean }) => void;
  ended: (reason: EndedReason) => void;
  error: (err: unknown) => void;
}

export declare class Call {
  readonly callId: string;
  pc: RTCPeerConnection | null;
  remoteStream: MediaStream | null;
  localStream: MediaStream | null;
  match: Match | null;
  partnerId: string | null;
  /** true when own user_id sorts lower than the partner's: this side sends the first offer. */
  isOfferer: boolean;
  /** perfect negotiation: the non-offerer is polite. */
  polite: boolean;
  endsAt: Date | null;
  timerStarted: boolean;
  session: Session | null;
  ended: boolean;
  endReason: EndedReason | null;
  connected: boolean;
  setupMs: number | null;
  readonly wasActive: boolean;
  on<K extends keyof CallEventMap>(type: K, fn: CallEventMap[K]): Unsubscribe;
  remainingMs(): number | null;
  /** End the call for both users and close the peer connection. */
  hangup(): Promise<void>;
  /** Close the peer connection locally only. */
  close(): void;
}

export declare class TetherClient {
  /** The URL requests and connections go to now (one of `urls`). */
  readonly baseUrl: string;
  /** Every server URL this client may use, in order (`urls`, or `[baseUrl]`). */
  readonly urls: readonly string[];
  readonly userId: string | null;
  connectionState: 'idle' | 'connecting' | 'open' | 'closed';
  activeTransport: 'ws' | 'sse' | null;
  token(): Promise<string>;
  /**
   * An authenticated JSON request to the current URL. With no answer at all, the
   * client moves to its next URL and sends it there once more when that is safe
   * (see `urls`); `idempotent: true` says this one is.
   */
  request<T = any>(
    method: string,
    path: string,
    body?: unknown,
    o?: { keepalive?: boolean; signal?: AbortSignal; idempotent?: boolean; headers?: Record<string, string> },
  ): Promise<T>;
  kinds(refresh?: boolean): Promise<Map<string, KindInfo>>;
  /** A server event type, "*" for all of them, or the SDK's "connection", "match" and "error". */
  on(type: SessionEventType, fn: (ev: SessionEvent) => void): Unsubscribe;
  on(type: 'stream.gap', fn: (gap: StreamGapEvent) => void): Unsubscribe;
  on(type: '*', fn: (ev: TetherEvent) => void): Unsubscribe;
  on(type: 'connection', fn: (c: { state: 'connecting' | 'open' | 'closed'; transport: 'ws' | 'sse' | null }) => void): Unsubscribe;
  on(type: 'match', fn: (match: Match, ev: SessionEvent | null) => void): Unsubscribe;
  on(type: 'error', fn: (err: unknown) => void): Unsubscribe;
  off(type: string, fn: Function): void;
  onMatch(fn: (match: Match, ev: SessionEvent | null) => void): Unsubscribe;
  /** Every `session.expiring`, with the handle of the session when this client tracks it. */
  onExpiring(fn: (ev: ExpiringEvent, handle: SessionHandle | null) => void): Unsubscribe;
  connect(): void;
  ready(timeoutMs?: number): Promise<boolean>;
  close(): void;

  startSession(kind: string, opts?: SessionOptions): Promise<SessionHandle | Conflict>;
  resumeSession(id: string, opts?: SessionOptions): Promise<SessionHandle | null>;
  /**
   * Revive a session that ended `idle_timeout` or `disconnected` within its kind's
   * `revive_window`. A Conflict when another live session blocks it (per_user = "reject");
   * rejects with a TetherError 409 when it cannot be revived (start a new one then).
   */
  revive(id: string, opts?: SessionOptions): Promise<SessionHandle | Conflict>;
  getSession(id: string): Promise<Session>;
  listSessions(q?: { kind?: string; status?: string; user_id?: string; limit?: number; cursor?: string }): Promise<{ sessions: Session[]; next_cursor: string | null }>;
  endSession(id: string, reason?: string): Promise<Session>;
  beacon(sessionId: string): boolean;

  startMatching(prefs: MatchingPrefs, opts?: SessionOptions): Promise<SessionHandle>;
  nextMatch(sessionId: string): Promise<{ match_found: boolean; match?: Match; awaiting_decision?: string }>;
  joinCall(callId: string): Promise<{ timer_started: boolean; ends_at: string | null }>;
  getCall(callId: string): Promise<Session>;
  endCall(callId: string): Promise<unknown>;
  connectCall(opts: ConnectCallOptions): Promise<Call>;
  decide(callId: string, decision: 'skip' | 'continue', o?: { personalityRating?: number[] }): Promise<unknown>;
  matches(): Promise<Array<{ user_id: string; name: string; matched_at: string }>>;
  putProfile(userId: string, profile: { name: string; age: number; bio?: string; interests: string[]; personality?: number[] }): Promise<unknown>;
}

export declare function createClient(options: ClientOptions): TetherClient;
export declare function fetchDemoToken(o: { baseUrl?: string; userId: string; fetch?: typeof fetch }): Promise<string>;
export declare function backoffDelay(attempt: number, o?: { baseMs?: number; capMs?: number; random?: () => number }): number;
export declare function heartbeatIntervalFor(kind: KindInfo | null | undefined): number;
export declare function decodeJwtPayload(token: string): Record<string, any> | null;
export declare function isOfferer(myUserId: string, partnerUserId: string): boolean;

declare const _default: {
  createClient: typeof createClient;
  fetchDemoToken: typeof fetchDemoToken;
  backoffDelay: typeof backoffDelay;
  heartbeatIntervalFor: typeof heartbeatIntervalFor;
  isOfferer: typeof isOfferer;
  decodeJwtPayload: typeof decodeJwtPayload;
  TetherError: typeof TetherError;
  VERSION: string;
};
export default _default;
