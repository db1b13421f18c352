//! A small typed client of the control API (DESIGN.md §8), used by `penguin demo`,
//! `penguin bench` and the end-to-end tests — the same HTTP contract outside
//! checks use. Answers stay `serde_json::Value` except where a field is needed.

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Clone)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
}

/// A non-2xx answer.
#[derive(Debug, thiserror::Error)]
#[error("{method} {path} answered {status}: {body}")]
pub struct ApiError {
    pub method: &'static str,
    pub path: String,
    pub status: u16,
    pub body: Value,
}

impl ApiClient {
    pub fn new(base_url: &str) -> Self {
        Self {
            base: base_url.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("http client"),
        }
    }

    async fn send(
        &self,
        method: &'static str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path);
        let mut request = match method {
            "GET" => self.http.get(&url),
            "POST" => self.http.post(&url),
            "DELETE" => self.http.delete(&url),
            other => bail!("unsupported method {other}"),
        }
        .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !(200..300).contains(&status) {
            return Err(ApiError {
                method,
                path: path.to_string(),
                status,
                body,
            }
            .into());
        }
        Ok(body)
    }

    pub async fn get(&self, path: &str, token: &str) -> anyhow::Result<Value> {
        self.send("GET", path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> anyhow::Result<Value> {
        self.send("POST", path, token, Some(body)).await
    }

    /// Creates a tenant; returns `(id, token)`.
    pub async fn create_tenant(&self, admin: &str, name: &str) -> anyhow::Result<(Uuid, String)> {
        let body = self
            .post("/v1/tenants", admin, &json!({ "name": name }))
            .await?;
        Ok((uuid_field(&body, "id")?, str_field(&body, "token")?))
    }

    /// Adds an already-warm IP to a tenant; returns its id.
    pub async fn add_ip(
        &self,
        admin: &str,
        tenant: Uuid,
        address: &str,
        helo: &str,
    ) -> anyhow::Result<Uuid> {
        let body = self
            .post(
                &format!("/v1/tenants/{tenant}/ips"),
                admin,
                &json!({ "address": address, "helo_name": helo }),
            )
            .await?;
        uuid_field(&body, "id")
    }

    /// Registers `domain` as a sending domain of `tenant` and marks it verified
    /// on the admin's word (`{"trust": true}`): for tools whose domains have no
    /// DNS (demo, bench, fault rehearsals). Returns the domain's id.
    pub async fn trust_domain(
        &self,
        admin: &str,
        tenant: Uuid,
        domain: &str,
    ) -> anyhow::Result<Uuid> {
        let body = self
            .post(
                "/v1/domains",
                admin,
                &json!({ "domain": domain, "tenant_id": tenant }),
            )
            .await?;
        let id = uuid_field(&body, "id")?;
        self.post(
            &format!("/v1/domains/{id}/verify"),
            admin,
            &json!({ "trust": true }),
        )
        .await?;
        Ok(id)
    }

    /// Creates a campaign from a JSON body (DESIGN.md §8); returns its id.
    pub async fn create_campaign(&self, token: &str, body: &Value) -> anyhow::Result<Uuid> {
        let body = self.post("/v1/campaigns", token, body).await?;
        uuid_field(&body, "id")
    }

    /// Adds leads in chunks of `chunk`; returns the summed number accepted.
    pub async fn add_leads(
        &self,
        token: &str,
        campaign: Uuid,
        leads: &[Value],
        chunk: usize,
    ) -> anyhow::Result<u64> {
        let mut accepted = 0;
        for part in leads.chunks(chunk.max(1)) {
            let body = self
                .post(
                    &format!("/v1/campaigns/{campaign}/leads"),
                    token,
                    &json!({ "leads": part }),
                )
                .await?;
            accepted += body.get("accepted").and_then(Value::as_u64).unwrap_or(0);
        }
        Ok(accepted)
    }

    /// `start`, `pause`, `resume` or `cancel`; returns the campaign status.
    pub async fn campaign_action(
        &self,
        token: &str,
        campaign: Uuid,
        action: &str,
    ) -> anyhow::Result<String> {
        let body = self
            .post(
                &format!("/v1/campaigns/{campaign}/{action}"),
                token,
                &json!({}),
            )
            .await?;
        str_field(&body, "status")
    }

    pub async fn campaign(&self, token: &str, campaign: Uuid) -> anyhow::Result<Value> {
        self.get(&format!("/v1/campaigns/{campaign}"), token).await
    }

    /// Jobs of a campaign in `state` (from `counts`).
    pub async fn count(&self, token: &str, campaign: Uuid, state: &str) -> anyhow::Result<u64> {
        let body = self.campaign(token, campaign).await?;
        Ok(body["counts"][state].as_u64().unwrap_or(0))
    }
}

fn str_field(body: &Value, field: &str) -> anyhow::Result<String> {
    body.get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .with_context(|| format!("answer lacks `{field}`: {body}"))
}

fn uuid_field(body: &Value, field: &str) -> anyhow::Result<Uuid> {
    str_field(body, field)?
        .parse()
        .with_context(|| format!("`{field}` is not a uuid"))
}
