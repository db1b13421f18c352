//! DKIM end to end: every message a campaign of a verified domain sends arrives
//! signed, and an independent receiver verifies it — mail-auth's verifier,
//! asking a real DNS server (an in-process zone) that serves exactly the records
//! the API told the tenant to publish. A message altered on the way fails. A
//! domain registered with Ed25519 is signed twice and both signatures verify.
//! After a rotation verifies, mail is signed with the new selector, and a From
//! under no verified domain is refused at campaign creation.

use std::net::SocketAddr;
use std::time::Duration;

use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use penguin::client::ApiClient;
use penguin::scenario::TenantRun;
use serde_json::{Value, json};

use crate::support::dns_zone::DnsZone;
use crate::support::rig::Rig;
use crate::support::{admin_token, wait_for};

/// A receiver that looks DKIM keys up in `zone`, as a mailbox provider would.
fn receiver(zone: SocketAddr) -> MessageAuthenticator {
    let mut server = NameServerConfig::udp_and_tcp(zone.ip());
    for connection in &mut server.connections {
        connection.port = zone.port();
    }
    let mut options = ResolverOpts::default();
    options.timeout = Duration::from_secs(2);
    MessageAuthenticator::new(ResolverConfig::from_name_servers(vec![server]), options)
        .expect("a resolver")
}

/// Verifies `raw`; returns the selectors of the signatures that passed, or
/// what failed.
async fn verify(receiver: &MessageAuthenticator, raw: &[u8]) -> Result<Vec<String>, String> {
    let message = AuthenticatedMessage::parse(raw).ok_or("not a message")?;
    let outputs = receiver.verify_dkim(&message).await;
    if outputs.is_empty() {
        return Err("no DKIM-Signature".into());
    }
    let mut selectors = Vec::new();
    for output in &outputs {
        if output.result() != &DkimResult::Pass {
            return Err(format!("{:?}", output.result()));
        }
        let signature = output.signature().ok_or("no signature")?;
        selectors.push(signature.s.clone());
    }
    Ok(selectors)
}

/// The domain (body) of `tenant` named `name`.
async fn domain_named(client: &ApiClient, token: &str, name: &str) -> Value {
    let list = client.get("/v1/domains", token).await.expect("domains");
    list["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no domain {name} in {list}"))
}

async fn publish(zone: &DnsZone, domain: &Value) {
    for record in domain["dns_records"].as_array().unwrap() {
        // Each name holds one record here: replace whatever was there.
        let name = record["name"].as_str().unwrap();
        zone.remove(name).await;
        zone.add_txt(name, record["value"].as_str().unwrap()).await;
    }
}

/// A new campaign of `tenant` from `from` with `n` leads `<stem><i>@example.test`,
/// started; returns once the sink holds its messages.
async fn send(rig: &Rig, client: &ApiClient, tenant: &TenantRun, from: &str, stem: &str, n: usize) {
    let before = rig.sink.stats().messages_accepted;
    let campaign = client
        .create_campaign(
            &tenant.token,
            &json!({"name": stem, "from": from, "subject": "Hi",
                    "text": "Hello {{first_name}}", "ip_ids": [tenant.ips[0].0]}),
        )
        .await
        .expect("campaign");
    let leads: Vec<Value> = (0..n)
        .map(|i| json!({"email": format!("{stem}{i}@example.test"), "fields": {"first_name": "Pat"}}))
        .collect();
    client
        .add_leads(&tenant.token, campaign, &leads, 100)
        .await
        .expect("leads");
    client
        .campaign_action(&tenant.token, campaign, "start")
        .await
        .expect("started");
    rig.wait_for_sink(before + n as u64, Duration::from_secs(60))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_mail_verifies_at_an_independent_receiver() {
    let zone = DnsZone::start().await;
    let rig = Rig::start(|config| {
        config.domains.require_verified = true;
        config.domains.signer_cache_secs = 1;
    })
    .await;
    rig.sink.keep_bodies(true);
    let scenario = rig.scenario(vec![vec!["127.0.0.2"]], 5).await;
    let tenant = &scenario.tenants[0];
    let client = &scenario.client;
    let receiver = receiver(zone.addr());

    // The scenario's domain, trusted by the admin, published in "DNS".
    let domain = domain_named(client, &tenant.token, "e2e-1.test").await;
    publish(&zone, &domain).await;
    let selector = domain["dkim_selector"].as_str().unwrap().to_string();
    scenario.start().await.expect("started");
    rig.wait_for_sink(5, Duration::from_secs(60)).await;
    let messages = rig.sink.messages();
    assert_eq!(messages.len(), 5);
    for message in &messages {
        let raw = rig.sink.body(message.seq).expect("body kept");
        assert_eq!(
            verify(&receiver, &raw).await,
            Ok(vec![selector.clone()]),
            "{}",
            String::from_utf8_lossy(&raw[..raw.len().min(2_000)])
        );
        // Altered on the way: the body hash no longer matches.
        let text = String::from_utf8_lossy(&raw);
        let tampered = text.replacen("\r\n\r\n", "\r\n\r\nP.S. wire 5,000 USD\r\n", 1);
        assert_ne!(tampered, text, "a header/body separator");
        assert!(verify(&receiver, tampered.as_bytes()).await.is_err());
        // So does a header the signature covers.
        let subject = text.replacen("Subject: ", "Subject: Re: ", 1);
        assert_ne!(subject, text, "a Subject header");
        assert!(verify(&receiver, subject.as_bytes()).await.is_err());
    }

    // Ed25519 as well: two signatures, both verify.
    let admin = admin_token();
    let dual = client
        .post(
            "/v1/domains",
            admin,
            &json!({"domain": "dual.test", "ed25519": true, "tenant_id": tenant.id}),
        )
        .await
        .expect("registered");
    let dual_id = dual["id"].as_str().unwrap();
    client
        .post(
            &format!("/v1/domains/{dual_id}/verify"),
            admin,
            &json!({"trust": true}),
        )
        .await
        .expect("trusted");
    let dual = domain_named(client, &tenant.token, "dual.test").await;
    publish(&zone, &dual).await;
    send(&rig, client, tenant, "hello@dual.test", "dual", 2).await;
    let keys: Vec<String> = dual["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["selector"].as_str().unwrap().to_string())
        .collect();
    for message in rig
        .sink
        .messages()
        .iter()
        .filter(|m| m.rcpt_to[0].starts_with("dual"))
    {
        let raw = rig.sink.body(message.seq).unwrap();
        let mut passed = verify(&receiver, &raw).await.expect("both verify");
        passed.sort();
        let mut expected = keys.clone();
        expected.sort();
        assert_eq!(passed, expected, "RSA and Ed25519 signatures");
    }

    // A rotation: once the new key's record is published and verified, mail
    // carries the new selector (the old record stays until its grace ends).
    let rotated = client
        .post(
            &format!("/v1/domains/{}/rotate", domain["id"].as_str().unwrap()),
            &tenant.token,
            &json!({}),
        )
        .await
        .expect("rotated");
    publish(&zone, &rotated).await;
    client
        .post(
            &format!("/v1/domains/{}/verify", domain["id"].as_str().unwrap()),
            admin,
            &json!({"trust": true}),
        )
        .await
        .expect("verified");
    let new_selector = domain_named(client, &tenant.token, "e2e-1.test").await["dkim_selector"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_selector, selector);
    // Nodes re-read keys every signer_cache_secs: send until one carries it.
    let mut round = 0;
    let (receiver, wanted) = (&receiver, &new_selector);
    let signed_new = wait_for(
        "mail signed with the new key",
        Duration::from_secs(60),
        || {
            round += 1;
            let stem = format!("rot{round}-");
            let rig = &rig;
            async move {
                send(rig, client, tenant, "hello@e2e-1.test", &stem, 1).await;
                let last = rig.sink.messages().pop().unwrap();
                let raw = rig.sink.body(last.seq).unwrap();
                let selectors = verify(receiver, &raw).await.expect("verifies");
                selectors.contains(wanted).then_some(selectors)
            }
        },
    )
    .await;
    assert_eq!(signed_new, vec![new_selector]);

    // And a From under no verified domain is refused.
    let refused = client
        .post(
            "/v1/campaigns",
            &tenant.token,
            &json!({"name": "spoof", "from": "ceo@bank.test", "subject": "Hi", "text": "x",
                    "ip_ids": [tenant.ips[0].0]}),
        )
        .await
        .expect_err("refused");
    assert!(
        refused.to_string().contains("domain_not_verified"),
        "{refused}"
    );
}
