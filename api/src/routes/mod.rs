//! The route groups, one per file, each a `routes() -> Router<AppState>` with
//! full paths. Also [`publish`], the hint every state change sends to the nodes.

pub mod campaigns;
pub mod ips;
pub mod leads;
pub mod ops;
pub mod tenants;

use penguin_engine::control::{self, ControlEvent};

use crate::AppState;

/// Tells every engine node about a change. A failure is only logged: the change
/// is already in Postgres, and nodes poll it anyway (slower).
pub(crate) async fn publish(state: &AppState, event: ControlEvent) {
    if let Err(error) = control::publish(&state.redis, &event).await {
        tracing::warn!(%error, tenant_id = %event.tenant_id(), "control event not published");
    }
}
