//! Size limits of the event model (SPEC §3), in one place so the docs and the code agree.

/// Largest accepted request body, in bytes (413 beyond).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// Largest accepted single event as received, in bytes (422 beyond).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Largest accepted `metadata` object once serialised, in bytes.
pub const MAX_METADATA_BYTES: usize = 32 * 1024;
/// Deepest accepted JSON nesting (400 beyond).
pub const MAX_JSON_DEPTH: usize = 64;
/// Longest `action` and `event_type`, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest identifier (actor, target, organisation, session and correlation ids, types), in characters.
pub const MAX_ID_CHARS: usize = 256;
/// Longest display name, in characters.
pub const MAX_DISPLAY_CHARS: usize = 512;
/// Longest e-mail address, in characters.
pub const MAX_EMAIL_CHARS: usize = 320;
/// Longest user agent or endpoint, in characters.
pub const MAX_TEXT_CHARS: usize = 2048;
/// Longest `error` message, in characters.
pub const MAX_ERROR_CHARS: usize = 8192;
/// Longest `changes[].field` path, in characters.
pub const MAX_FIELD_CHARS: usize = 512;
/// Most entries in `changes` (given or computed).
pub const MAX_CHANGES: usize = 1000;
/// Most entries in `related`.
pub const MAX_RELATED: usize = 100;
/// Most events in one ingest request.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// How far in the future `occurred_at` may lie, in seconds.
pub const MAX_FUTURE_SECS: i64 = 24 * 3600;
