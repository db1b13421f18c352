//! The sink's JSON API, so scripts and out-of-process tests can see what arrived
//! and script replies.
//!
//! Served by [`super::Sink::start`] when `http_listen` is set. Routes:
//! - `GET /stats` → [`SinkStats`]
//! - `GET /messages?after=N&limit=M` → `{messages: [ReceivedMessage], next_after}`
//!   (records with `seq > after`, at most `limit` ≤ 10,000, default 1,000)
//! - `POST /reset` → 204; forgets records and counters, keeps rules
//! - `GET /rules`, `POST /rules` (a JSON array of [`Rule`], replaces all) → the rules
//!
//! Errors are `{"error": {"code", "message"}}` with a 4xx status.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::rules::Rule;
use super::state::{ReceivedMessage, SinkState, SinkStats};

const DEFAULT_PAGE: usize = 1_000;
const MAX_PAGE: usize = 10_000;

pub(crate) fn router(state: Arc<SinkState>) -> Router {
    Router::new()
        .route("/stats", get(stats))
        .route("/messages", get(messages))
        .route("/reset", post(reset))
        .route("/rules", get(get_rules).post(set_rules))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

/// One page of `GET /messages`; pass `next_after` as `after` for the next page.
#[derive(Debug, Serialize, Deserialize)]
pub struct MessagesPage {
    pub messages: Vec<ReceivedMessage>,
    pub next_after: u64,
}

async fn stats(State(state): State<Arc<SinkState>>) -> Json<SinkStats> {
    Json(state.stats())
}

async fn messages(
    State(state): State<Arc<SinkState>>,
    query: Result<Query<MessagesQuery>, QueryRejection>,
) -> Result<Json<MessagesPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let after = query.after.unwrap_or(0);
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
    let messages = state.messages_after(after, limit);
    let next_after = messages.last().map_or(after, |m| m.seq);
    Ok(Json(MessagesPage {
        messages,
        next_after,
    }))
}

async fn reset(State(state): State<Arc<SinkState>>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}

async fn get_rules(State(state): State<Arc<SinkState>>) -> Json<Vec<Rule>> {
    Json(state.rules())
}

async fn set_rules(
    State(state): State<Arc<SinkState>>,
    body: Result<Json<Vec<Rule>>, JsonRejection>,
) -> Result<Json<Vec<Rule>>, ApiError> {
    let Json(rules) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    state
        .set_rules(rules)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(state.rules()))
}

struct ApiError {
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": "bad_request", "message": self.message}});
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    }
}
