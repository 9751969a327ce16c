//! The sealtrail event model: what an audit event is, how an incoming event is validated, how
//! sensitive values are redacted and how `changes` are computed from `before`/`after`.
//!
//! **Architecture Invariant:** this crate does no I/O. It is pure functions over values, so the
//! server, the client library and the tests all share one definition of a valid event.

pub mod diff;
pub mod event;
pub mod json;
pub mod limits;
pub mod proxy;
pub mod redact;
pub mod timestamp;
pub mod validate;

pub use diff::diff;
pub use event::{
    Actor, ActorType, Category, Change, Context, Event, NewEvent, Organization, Outcome,
    OutputChange, Related, Target,
};
pub use redact::Redactor;
pub use timestamp::Timestamp;
pub use validate::{FieldError, Tenant, parse_event, validate_tenant};
