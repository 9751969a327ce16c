//! The audit context of the work in progress — who acts and under which correlation id —
//! carried in a task-local, so that events recorded outside the request (in spawned tasks and
//! background jobs) are attributed too.

use std::future::Future;

use sealtrail_model::event::ActorType;
use sealtrail_model::{Actor, Context as EventContext};
use tokio::task::JoinHandle;

use crate::AuditEvent;

tokio::task_local! {
    static CONTEXT: AuditContext;
}

/// Who acts, and the correlation id (and W3C `traceparent`) of the work.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditContext {
    /// The acting party, when known.
    pub actor: Option<Actor>,
    /// The correlation id.
    pub correlation_id: Option<String>,
    /// The W3C `traceparent` the work was started under, if any.
    pub traceparent: Option<String>,
}

impl AuditContext {
    /// The context of the current task, if one was set.
    pub fn current() -> Option<Self> {
        CONTEXT.try_with(Clone::clone).ok()
    }

    /// Runs `work` with this context as the current one.
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        CONTEXT.scope(self, work).await
    }
}

/// Spawns a task that carries the current audit context (like `tokio::spawn` otherwise).
pub fn spawn<F>(work: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match AuditContext::current() {
        Some(ctx) => tokio::spawn(CONTEXT.scope(ctx, work)),
        None => tokio::spawn(work),
    }
}

impl AuditEvent {
    /// An event of `action` attributed from the current audit context: its actor (else the
    /// `system` actor) and its correlation id.
    pub fn in_context(action: impl Into<String>) -> Self {
        let ctx = AuditContext::current().unwrap_or_default();
        let mut event = Self::new(action, "system");
        event.actor = ctx.actor.unwrap_or(Actor {
            id: "system".into(),
            actor_type: ActorType::System,
            name: None,
            email: None,
        });
        if ctx.correlation_id.is_some() {
            event.context = Some(EventContext {
                correlation_id: ctx.correlation_id,
                ..EventContext::default()
            });
        }
        event
    }
}
