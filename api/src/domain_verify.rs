//! Verifying a sending domain: in DNS ([`check`]) or on the admin's word
//! ([`trust`]), for the API's `verify` route and the daily re-check
//! ([`crate::domain_recheck`]). Both record the outcome and start signing
//! with a rotation's key once its record is seen (or trusted).

use std::net::IpAddr;

use deadpool_postgres::Pool;
use metrics::counter;
use penguin_engine::db::StoreError;
use penguin_engine::dkim::{self, DkimAlgorithm};
use penguin_engine::domain_check::{self, Check, DomainDns, Expected};
use penguin_engine::store;
use penguin_engine::store::domain_checks::Verification;
use penguin_engine::store::domains::DomainRow;
use time::OffsetDateTime;

use crate::domain_view::{CheckBody, VerifyBody};

/// DNS checks of sending domains (the API's and the daily ones), by `status`.
pub const DOMAIN_CHECKS_TOTAL: &str = "penguin_domain_checks_total";

/// The addresses the tenant's SPF record must permit.
pub async fn tenant_ips(pg: &Pool, tenant: uuid::Uuid) -> Result<Vec<IpAddr>, StoreError> {
    store::domains::tenant_ip_addresses(pg, tenant).await
}

/// Looks the domain's records up now and records the outcome. The DKIM records
/// of the active keys are required; a pending (rotation) key's record is
/// reported and, once found, activates that key.
pub async fn check(
    pg: &Pool,
    dns: &dyn DomainDns,
    row: &DomainRow,
    grace: time::Duration,
) -> Result<VerifyBody, StoreError> {
    let ips = tenant_ips(pg, row.tenant_id).await?;
    let signing: Vec<_> = row
        .keys
        .iter()
        .filter(|k| k.state == "active" || k.state == "pending")
        .collect();
    let expected = Expected {
        domain: &row.domain,
        dkim: signing
            .iter()
            .map(|k| {
                let algorithm: DkimAlgorithm =
                    k.algorithm.parse().unwrap_or(DkimAlgorithm::RsaSha256);
                (
                    k.selector.clone(),
                    dkim::txt_value(algorithm, &k.public_key),
                )
            })
            .collect(),
        ips,
    };
    let mut checks = domain_check::verify(dns, &expected).await;
    let pending: Vec<&str> = signing
        .iter()
        .filter(|k| k.state == "pending")
        .map(|k| k.selector.as_str())
        .collect();
    let mut activate = Vec::new();
    for check in &mut checks {
        if let Some(selector) = check.name.strip_prefix("dkim:")
            && pending.contains(&selector)
        {
            check.required = false;
            if check.ok {
                activate.push(selector.to_string());
            }
        }
    }
    // A domain whose only keys are pending (none active yet) needs them.
    if !signing.iter().any(|k| k.state == "active") {
        for check in &mut checks {
            if check.name.starts_with("dkim:") {
                check.required = true;
            }
        }
    }
    // A record missing from a domain that verified before is a failure, not
    // "not published yet".
    let status = match domain_check::status(&checks) {
        "pending" if row.verified_at.is_some() => "failed",
        status => status,
    };
    let now = OffsetDateTime::now_utc();
    let verification = Verification {
        status,
        checks: serde_json::to_value(&checks).unwrap_or_default(),
        method: "dns",
        by: "dns",
        activate: if status == "verified" {
            activate
        } else {
            Vec::new()
        },
        grace,
    };
    store::domain_checks::record_verification(pg, row.tenant_id, row.id, &verification, now)
        .await?;
    counter!(DOMAIN_CHECKS_TOTAL, "status" => status).increment(1);
    Ok(VerifyBody {
        status,
        checks: checks.into_iter().map(CheckBody::from).collect(),
    })
}

/// Marks the domain verified on the admin's word, without DNS, and activates
/// its pending keys; recorded as `verify_method = trust`, `verified_by = admin`.
pub async fn trust(
    pg: &Pool,
    row: &DomainRow,
    grace: time::Duration,
) -> Result<VerifyBody, StoreError> {
    let checks: Vec<Check> = Vec::new();
    let verification = Verification {
        status: "verified",
        checks: serde_json::to_value(&checks).unwrap_or_default(),
        method: "trust",
        by: "admin",
        activate: row
            .keys
            .iter()
            .filter(|k| k.state == "pending")
            .map(|k| k.selector.clone())
            .collect(),
        grace,
    };
    let now = OffsetDateTime::now_utc();
    store::domain_checks::record_verification(pg, row.tenant_id, row.id, &verification, now)
        .await?;
    Ok(VerifyBody {
        status: "verified",
        checks: Vec::new(),
    })
}
