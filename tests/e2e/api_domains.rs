//! Sending domains through the API (`/v1/domains`), against a real DNS server
//! (an in-process authoritative zone the node's `[delivery.dns]` points at):
//! registration answers the records to publish; a domain belongs to one tenant;
//! `verify` stays `pending` until the records are published, turns `verified`
//! when they are and `failed` when one is wrong; campaigns may only send as a
//! verified domain or a subdomain of one (422 `domain_not_verified`); the admin
//! may trust a domain, a tenant may not; a rotation lists its key beside the
//! old one and takes over once verified; a domain in use cannot be deleted.
//! Without `[secrets] master_key` nothing is registered, and a database dump
//! holds no private key in the clear.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::api::{Answer, ApiClient, ApiServer};
use crate::support::dns_zone::DnsZone;
use crate::support::{TestEnv, admin_token};

fn campaign_from(from: &str, ip: Uuid) -> Value {
    json!({
        "name": "launch", "from": from, "subject": "Hi", "text": "Hello",
        "ip_ids": [ip],
    })
}

/// Publishes every record of `domain` (a domain body) in `zone`, but `skip`.
async fn publish(zone: &DnsZone, domain: &Value, skip: &[&str]) {
    for record in domain["dns_records"].as_array().expect("dns_records") {
        let purpose = record["purpose"].as_str().unwrap();
        if skip.contains(&purpose) {
            continue;
        }
        zone.add_txt(
            record["name"].as_str().unwrap(),
            record["value"].as_str().unwrap(),
        )
        .await;
    }
}

fn purposes(domain: &Value) -> Vec<String> {
    domain["dns_records"]
        .as_array()
        .expect("dns_records")
        .iter()
        .map(|r| r["purpose"].as_str().unwrap().to_string())
        .collect()
}

fn check<'a>(answer: &'a Answer, name: &str) -> &'a Value {
    answer.body["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.starts_with(name)))
        .unwrap_or_else(|| panic!("no {name} check in {}", answer.body))
}

async fn verify(api: &ApiClient, token: &str, id: &str) -> Answer {
    let answer = api
        .post(&format!("/v1/domains/{id}/verify"), Some(token), &json!({}))
        .await;
    answer.expect(200);
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_is_published_verified_and_gates_campaigns() {
    let env = TestEnv::start().await;
    let zone = DnsZone::start().await;
    let server = ApiServer::start(&env, |config| {
        config.domains.require_verified = true;
        config.delivery.dns.nameservers = vec![zone.addr().to_string()];
    })
    .await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    let ip = api.add_ip(tenant, "127.0.0.2").await;
    let domain = format!("mail.acme.{}", "test");

    // Nothing registered: refused, naming the domain.
    let refused = api
        .create_campaign_with(&token, &campaign_from(&format!("hi@{domain}"), ip))
        .await;
    refused.assert_error(422, "domain_not_verified");
    assert!(refused.message().contains(&domain), "{}", refused.message());

    // Registered: pending, with the three records to publish.
    let created = api
        .post(
            "/v1/domains",
            Some(&token),
            &json!({ "domain": domain.to_uppercase() }),
        )
        .await;
    let body = created.expect(201).clone();
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(body["domain"], json!(domain));
    assert_eq!(body["status"], "pending");
    assert_eq!(body["tenant_id"], json!(tenant));
    assert_eq!(purposes(&body), ["dkim", "spf", "dmarc"]);
    let selector = body["dkim_selector"].as_str().unwrap();
    let dkim = &body["dns_records"][0];
    assert_eq!(dkim["type"], "TXT");
    assert_eq!(
        dkim["name"],
        json!(format!("{selector}._domainkey.{domain}"))
    );
    assert!(
        dkim["value"]
            .as_str()
            .unwrap()
            .starts_with("v=DKIM1; k=rsa; p="),
        "{dkim}"
    );
    let spf = body["dns_records"][1]["value"].as_str().unwrap();
    assert!(
        spf.starts_with("v=spf1 ") && spf.contains("ip4:127.0.0.2"),
        "{spf}"
    );
    assert!(
        body["dns_records"][2]["value"]
            .as_str()
            .unwrap()
            .starts_with("v=DMARC1; p="),
        "{body}"
    );
    assert!(
        !body.to_string().to_lowercase().contains("private"),
        "{body}"
    );

    // One tenant per domain; another tenant neither takes nor sees it.
    let (_, other_token) = api.create_tenant("other").await;
    api.post(
        "/v1/domains",
        Some(&other_token),
        &json!({ "domain": domain }),
    )
    .await
    .assert_error(409, "conflict");
    api.get(&format!("/v1/domains/{id}"), Some(&other_token))
        .await
        .assert_error(404, "not_found");
    let listed = api.get("/v1/domains", Some(&other_token)).await;
    assert_eq!(listed.expect(200)["domains"], json!([]));

    // Nothing published yet: pending, the DKIM check says what it expects.
    let pending = verify(api, &token, &id).await;
    assert_eq!(pending.body["status"], "pending", "{}", pending.body);
    let dkim_check = check(&pending, "dkim:");
    assert_eq!(dkim_check["ok"], false);
    assert_eq!(dkim_check["expected"], dkim["value"]);
    api.create_campaign_with(&token, &campaign_from(&format!("hi@{domain}"), ip))
        .await
        .assert_error(422, "domain_not_verified");

    // Published: verified, and campaigns from it (or a subdomain) are taken;
    // the parent domain is not covered.
    publish(&zone, &body, &[]).await;
    let verified = verify(api, &token, &id).await;
    assert_eq!(verified.body["status"], "verified", "{}", verified.body);
    for name in ["dkim:", "spf", "dmarc"] {
        assert_eq!(check(&verified, name)["ok"], true, "{}", verified.body);
    }
    let ptr = check(&verified, "ptr:");
    assert_eq!(ptr["required"], false, "{ptr}");
    let shown = api.get(&format!("/v1/domains/{id}"), Some(&token)).await;
    let shown = shown.expect(200);
    assert_eq!(shown["verify_method"], "dns");
    assert!(shown["verified_at"].is_string(), "{shown}");
    assert!(!shown["checks"].as_array().unwrap().is_empty(), "{shown}");
    let campaign = api
        .create_campaign_with(&token, &campaign_from(&format!("hi@{domain}"), ip))
        .await;
    campaign.expect(201);
    let news = api
        .create_campaign_with(&token, &campaign_from(&format!("hi@news.{domain}"), ip))
        .await;
    news.expect(201);
    api.create_campaign_with(&token, &campaign_from(&format!("hi@acme.{}", "test"), ip))
        .await
        .assert_error(422, "domain_not_verified");

    // A wrong key in DNS: failed, with what was found.
    zone.remove(dkim["name"].as_str().unwrap()).await;
    zone.add_txt(dkim["name"].as_str().unwrap(), "v=DKIM1; k=rsa; p=AAAA")
        .await;
    let failed = verify(api, &token, &id).await;
    assert_eq!(failed.body["status"], "failed", "{}", failed.body);
    assert!(
        check(&failed, "dkim:")["found"]
            .as_str()
            .unwrap()
            .contains("p=AAAA"),
        "{}",
        failed.body
    );

    // Only the admin trusts.
    api.post(
        &format!("/v1/domains/{id}/verify"),
        Some(&token),
        &json!({ "trust": true }),
    )
    .await
    .assert_error(403, "forbidden");
    let trusted = api
        .post(
            &format!("/v1/domains/{id}/verify"),
            Some(admin_token()),
            &json!({ "trust": true }),
        )
        .await;
    assert_eq!(trusted.expect(200)["status"], "verified");
    let shown = api.get(&format!("/v1/domains/{id}"), Some(&token)).await;
    let shown = shown.expect(200);
    assert_eq!(
        (&shown["verify_method"], &shown["verified_by"]),
        (&json!("trust"), &json!("admin"))
    );

    // A rotation: a second key to publish; one at a time.
    let rotated = api
        .post(
            &format!("/v1/domains/{id}/rotate"),
            Some(&token),
            &json!({}),
        )
        .await;
    let rotated = rotated.expect(200).clone();
    assert_eq!(purposes(&rotated), ["dkim_next", "dkim", "spf", "dmarc"]);
    assert_eq!(
        rotated["dkim_selector"],
        json!(selector),
        "the old key signs until the new verifies"
    );
    api.post(
        &format!("/v1/domains/{id}/rotate"),
        Some(&token),
        &json!({}),
    )
    .await
    .assert_error(409, "conflict");
    zone.remove(dkim["name"].as_str().unwrap()).await;
    publish(&zone, &rotated, &["spf", "dmarc"]).await;
    let verified = verify(api, &token, &id).await;
    assert_eq!(verified.body["status"], "verified", "{}", verified.body);
    let after = api.get(&format!("/v1/domains/{id}"), Some(&token)).await;
    let after = after.expect(200);
    assert_eq!(purposes(after), ["dkim", "dkim_retiring", "spf", "dmarc"]);
    assert_ne!(after["dkim_selector"], json!(selector), "{after}");

    // In use by a draft campaign: not deleted.
    api.delete(&format!("/v1/domains/{id}"), Some(&token))
        .await
        .assert_error(409, "conflict");
    for draft in [campaign.id(), news.id()] {
        let cancel = api
            .post(
                &format!("/v1/campaigns/{draft}/cancel"),
                Some(&token),
                &json!({}),
            )
            .await;
        assert!(cancel.status < 300, "{}", cancel.body);
    }
    let deleted = api.delete(&format!("/v1/domains/{id}"), Some(&token)).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    api.get(&format!("/v1/domains/{id}"), Some(&token))
        .await
        .assert_error(404, "not_found");
    let keys: i64 = env
        .pg
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM dkim_keys", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(keys, 0, "the keys went with the domain");
}

#[tokio::test]
async fn bad_names_and_missing_secrets_change_nothing() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |config| config.secrets.master_key = None).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    for bad in ["localhost", "a..b", "-a.example", "a b.example", ""] {
        api.post("/v1/domains", Some(&token), &json!({ "domain": bad }))
            .await
            .assert_error(422, "invalid_request");
    }
    api.post(
        "/v1/domains",
        Some(&token),
        &json!({ "domain": "mail.acme.example", "tenant_id": tenant }),
    )
    .await
    .assert_error(422, "invalid_request");
    api.post(
        "/v1/domains",
        Some(admin_token()),
        &json!({ "domain": "mail.acme.example" }),
    )
    .await
    .assert_error(422, "invalid_request");
    api.post(
        "/v1/domains",
        Some(&token),
        &json!({ "domain": "mail.acme.example" }),
    )
    .await
    .assert_error(409, "secrets_not_configured");
    let rows: i64 = env
        .pg
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM sending_domains", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_recheck_finds_a_domain_that_stopped_verifying() {
    let env = TestEnv::start().await;
    let zone = DnsZone::start().await;
    let mut config = env.config.clone();
    config.delivery.dns.nameservers = vec![zone.addr().to_string()];
    let dns_config = config.clone();
    let server = ApiServer::start(&env, move |c| *c = dns_config).await;
    let api = &server.api;
    let (tenant, token) = api.create_tenant("acme").await;
    api.add_ip(tenant, "127.0.0.2").await;
    let domain = format!("mail.acme.{}", "test");
    let created = api
        .post("/v1/domains", Some(&token), &json!({ "domain": domain }))
        .await;
    let body = created.expect(201).clone();
    let id = body["id"].as_str().unwrap().to_string();
    publish(&zone, &body, &[]).await;
    assert_eq!(verify(api, &token, &id).await.body["status"], "verified");

    let kit = penguin_api::domain_kit::DomainKit::from_config(&config).expect("kit");
    let round = || penguin_api::domain_recheck::recheck_round(&env.pg, &kit, 24, 72, false);
    // Checked just now: nothing is due.
    assert_eq!(round().await.expect("round"), 0);

    // A day later the SPF record is gone.
    env.pg
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE sending_domains SET last_checked_at = now() - interval '25 hours'",
            &[],
        )
        .await
        .unwrap();
    zone.remove(&domain).await;
    assert_eq!(round().await.expect("round"), 1);
    let shown = api.get(&format!("/v1/domains/{id}"), Some(&token)).await;
    let shown = shown.expect(200);
    assert_eq!(shown["status"], "failed", "{shown}");
    let spf = shown["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "spf")
        .expect("an spf check");
    assert_eq!(spf["ok"], false, "{shown}");
    // Claimed and stamped: the next round (on any node) does not check it again.
    assert_eq!(round().await.expect("round"), 0);

    // A rotated-out key is deleted by the first round after its grace.
    api.post(
        &format!("/v1/domains/{id}/rotate"),
        Some(&token),
        &json!({}),
    )
    .await
    .expect(200);
    let trusted = api
        .post(
            &format!("/v1/domains/{id}/verify"),
            Some(admin_token()),
            &json!({ "trust": true }),
        )
        .await;
    trusted.expect(200);
    let keys = || async {
        let rows = env.psql("SELECT state FROM dkim_keys ORDER BY state").await;
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys().await, ["active", "retiring"]);
    round().await.expect("round");
    assert_eq!(keys().await, ["active", "retiring"], "still in its grace");
    env.psql(
        "UPDATE dkim_keys SET retire_after = now() - interval '1 second' WHERE state = 'retiring'",
    )
    .await;
    round().await.expect("round");
    assert_eq!(keys().await, ["active"]);
    let shown = api.get(&format!("/v1/domains/{id}"), Some(&token)).await;
    let purposes = purposes(shown.expect(200));
    assert_eq!(purposes, ["dkim", "spf", "dmarc"]);
}

/// `pg_dump` of the whole database after registering a domain (RSA and
/// Ed25519 keys): the sealed keys are in it, the keys themselves are not, in
/// any encoding a dump could hold them (hex bytea, base64, PEM).
#[tokio::test]
async fn a_database_dump_holds_no_private_key_in_the_clear() {
    use base64::Engine as _;
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (_, token) = api.create_tenant("acme").await;
    api.post(
        "/v1/domains",
        Some(&token),
        &json!({ "domain": "mail.acme.example", "ed25519": true }),
    )
    .await
    .expect(201);
    let sealer = penguin_engine::secrets::Sealer::from_config(&env.config.secrets)
        .expect("a valid key")
        .expect("the rig has a master key");
    let rows = env
        .psql(
            "SELECT tenant_id, domain_id, selector, sealed_key, key_version, public_key
             FROM dkim_keys",
        )
        .await;
    assert_eq!(rows.len(), 2, "an RSA and an Ed25519 key");

    let bindir = crate::support::process::find_pg_bindir().expect("PostgreSQL binaries");
    let output = std::process::Command::new(bindir.join("pg_dump"))
        .arg("--dbname")
        .arg(&env.config.database.url)
        .output()
        .expect("pg_dump runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dump = String::from_utf8(output.stdout).expect("a text dump");
    assert!(!dump.contains("PRIVATE KEY"));
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    for row in rows {
        let (tenant, domain, selector): (Uuid, Uuid, String) = (row.get(0), row.get(1), row.get(2));
        let sealed: Vec<u8> = row.get(3);
        let version: String = row.get(4);
        assert!(
            dump.contains(&hex(&sealed)),
            "the dump holds the sealed key"
        );
        let aad = penguin_engine::store::domains::key_aad(tenant, domain, &selector);
        let key = sealer
            .open(&sealed, &version, aad.as_bytes())
            .expect("the node opens its key");
        // Any 18-byte run of the key's private part, in hex or base64, would be
        // a leak (runs also in the public key, published anyway, excepted).
        let public = base64::engine::general_purpose::STANDARD
            .decode(row.get::<_, String>(5))
            .expect("a base64 public key");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&key[..]);
        let mut checked = 0;
        for (i, window) in key.chunks(18).enumerate().filter(|(_, c)| c.len() == 18) {
            if public.windows(18).any(|w| w == window) {
                continue;
            }
            checked += 1;
            assert!(!dump.contains(&hex(window)), "key bytes in hex in the dump");
            let encoded = &b64[i * 24..i * 24 + 24];
            assert!(!dump.contains(encoded), "key bytes in base64 in the dump");
        }
        assert!(checked > 0, "some of the key is private");
    }
}
