//! The API describing itself, public: `GET /openapi.json` (the OpenAPI 3
//! document `crate::openapi` builds from the handlers) and `GET /docs` (a
//! self-contained page, `docs.html`, that fetches the document and lists every
//! operation with its parameters, bodies and answers; no script or style from
//! elsewhere, so it works offline).

use axum::Extension;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

/// The page of `GET /docs`.
const DOCS_PAGE: &str = include_str!("docs.html");

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(docs_page))
}

/// The serialized document, handed to [`openapi_json`] as a request extension
/// by `crate::router` once every route is registered.
#[derive(Debug, Clone)]
pub struct Document(pub Bytes);

/// This document: the OpenAPI 3 description of every route.
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi_json(Extension(Document(json)): Extension<Document>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], json)
}

/// A human-readable page of this document (works offline).
#[utoipa::path(get, path = "/docs", tag = "ops",
    responses((status = 200, description = "An HTML page rendering `/openapi.json`",
        body = String, content_type = "text/html; charset=utf-8")))]
async fn docs_page() -> Html<&'static str> {
    Html(DOCS_PAGE)
}
