//! The wire format: one Rust type per request body, response body, event
//! payload and WebSocket message. Handlers read and answer these types
//! themselves, and `/openapi.json` is generated from the same types (their
//! `utoipa::ToSchema` derives) and from the `#[utoipa::path]` attributes on
//! the handlers, so the description cannot drift from what is served.
//!
//! The vocabularies (`Status`, `EndReason`, `EventType`) and the session
//! record are the engine's own types, described behind its `schema` feature.
//!
//! - [`sessions`]: sessions, participants and invitations (contract section 4);
//! - [`events`]: event payloads and WebSocket messages (section 5);
//! - [`matching`]: profiles, the pool, calls and signals (section 6);
//! - [`history`]: a session's event history (section 10);
//! - [`admin`]: health, cleanup, kinds and the demo token (section 7);
//! - [`webhooks`]: webhook endpoints and deliveries (section 9);
//! - [`problem`]: the problem+json error body.

pub mod admin;
pub mod events;
pub mod history;
pub mod matching;
pub mod problem;
pub mod sessions;
pub mod webhooks;

/// Display names (of a session's owner, a participant or an invite guest) are
/// at most this many characters; the schemas state the same `maxLength`.
pub const NAME_MAX_CHARS: usize = 200;
