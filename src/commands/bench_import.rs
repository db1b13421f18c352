//! `penguin bench --import-leads N`: lead import speed. Creates a tenant, an IP
//! and a draft campaign through the API, then posts N leads as one `text/csv`
//! body (`email,first_name,company`, spread over 20 domains) and reports leads/s
//! from the request's start to its answer (parse, validate, suppression check,
//! insert, commit). The body is built before the clock starts.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::client::ApiClient;

/// Runs the import benchmark against the node's API at `api_url`.
pub async fn run(api_url: &str, admin: &str, leads: usize) -> anyhow::Result<()> {
    let client = ApiClient::new(api_url);
    let (tenant, token) = client.create_tenant(admin, "import-bench").await?;
    client
        .trust_domain(admin, tenant, "import-bench.test")
        .await?;
    let ip = client
        .add_ip(admin, tenant, "127.0.0.2", "mta1.import-bench.test")
        .await?;
    let campaign = client
        .create_campaign(
            &token,
            &json!({
                "name": "import bench",
                "from": "hello@import-bench.test",
                "subject": "Hi {{first_name}}",
                "text": "Hello {{first_name}} of {{company}}",
                "ip_ids": [ip.to_string()],
            }),
        )
        .await?;
    let body = csv_body(leads);
    let bytes = body.len();
    eprintln!("importing {leads} leads ({} MiB of CSV) …", bytes >> 20);
    let (answer, secs) = post_csv(api_url, &token, campaign, body).await?;
    let accepted = answer["accepted"].as_u64().unwrap_or(0);
    anyhow::ensure!(
        accepted == leads as u64,
        "{accepted} of {leads} leads accepted: {answer}"
    );
    println!("penguin bench --import-leads: {leads} leads, {bytes} bytes of CSV in one request");
    println!(
        "import : {:>9.0} leads/s  ({secs:.1} s, all accepted)",
        leads as f64 / secs
    );
    Ok(())
}

/// `leads` leads as one CSV body (`email,first_name,company`, 20 domains, a
/// quoted cell per row), built before any clock starts.
pub fn csv_body(leads: usize) -> String {
    let mut body = String::with_capacity(leads * 48 + 32);
    body.push_str("email,first_name,company\n");
    for n in 0..leads {
        body.push_str(&format!(
            "lead{n}@domain{}.test,Lead{n},\"Company {}, Inc.\"\n",
            n % 20,
            n % 997
        ));
    }
    body
}

/// Posts a CSV body to the campaign's import; returns the answer and the
/// seconds from the request to the answer. A non-2xx answer is an error.
pub async fn post_csv(
    api_url: &str,
    token: &str,
    campaign: uuid::Uuid,
    body: String,
) -> anyhow::Result<(Value, f64)> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3_600))
        .build()?;
    let started = Instant::now();
    let response = http
        .post(format!("{api_url}/v1/campaigns/{campaign}/leads"))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .context("posting the CSV")?;
    let status = response.status();
    let answer: Value = response.json().await.context("the import's answer")?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(status.is_success(), "import answered {status}: {answer}");
    Ok((answer, secs))
}
