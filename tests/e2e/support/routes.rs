//! [`ROUTES`]: every route the control API serves, the one list the route
//! tests share (re-exported as `support::api::ROUTES`).

/// Every (method, path) of DESIGN.md §8 that exists in the code, plus `/docs`.
/// `api_openapi` proves it is exactly what the router serves and documents;
/// `api_hostile` runs its attack matrix over every one of them, so a new route
/// must be added here and then gets a row in both.
pub const ROUTES: [(&str, &str); 40] = [
    ("GET", "/health"),
    ("GET", "/health/db"),
    ("GET", "/health/queue"),
    ("GET", "/health/email"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("POST", "/v1/tenants"),
    ("GET", "/v1/nodes"),
    ("POST", "/v1/nodes/{id}/drain"),
    ("POST", "/v1/tenants/{id}/tokens"),
    ("GET", "/v1/tenants/{id}/tokens"),
    ("DELETE", "/v1/tenants/{id}/tokens/{token_id}"),
    ("POST", "/v1/tenants/{id}/ips"),
    ("GET", "/v1/ips"),
    ("GET", "/v1/ips/{id}"),
    ("POST", "/v1/ips/{id}/pause"),
    ("POST", "/v1/ips/{id}/resume"),
    ("GET", "/v1/warmup-schedules"),
    ("POST", "/v1/warmup-schedules"),
    ("GET", "/v1/warmup-schedules/{name}"),
    ("POST", "/v1/campaigns"),
    ("GET", "/v1/campaigns/{id}"),
    ("POST", "/v1/campaigns/{id}/leads"),
    ("POST", "/v1/campaigns/{id}/start"),
    ("POST", "/v1/campaigns/{id}/pause"),
    ("POST", "/v1/campaigns/{id}/resume"),
    ("POST", "/v1/campaigns/{id}/cancel"),
    ("GET", "/v1/campaigns/{id}/events"),
    ("GET", "/v1/campaigns/{id}/stats"),
    ("GET", "/v1/ips/{id}/stats"),
    ("GET", "/v1/stats"),
    ("GET", "/v1/suppressions"),
    ("POST", "/v1/suppressions"),
    ("DELETE", "/v1/suppressions/{email}"),
    ("POST", "/v1/complaints"),
    ("GET", "/u/{token}"),
    ("POST", "/u/{token}"),
    ("GET", "/t/o/{token}"),
    ("GET", "/t/c/{token}"),
];
