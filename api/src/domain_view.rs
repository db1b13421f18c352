//! How the API shows a sending domain: its state, keys (public halves only),
//! the DNS records to publish, and the last verification's checks.

use std::net::IpAddr;

use penguin_engine::dkim::{self, DkimAlgorithm};
use penguin_engine::domain_check::{self, Check};
use penguin_engine::store::domains::DomainRow;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// One record to publish, ready to paste.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DnsRecord {
    /// Always `TXT` here.
    #[serde(rename = "type")]
    pub kind: String,
    /// The full name, without a trailing dot.
    pub name: String,
    pub value: String,
    /// `dkim` (signs now), `dkim_next` (a rotation's key: publish it, then
    /// verify), `dkim_retiring` (replaced; keep it until `retire_after`), `spf`,
    /// `dmarc`.
    pub purpose: String,
}

/// One DKIM key, public half only.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyBody {
    pub selector: String,
    /// `rsa-sha256` or `ed25519-sha256`.
    pub algorithm: String,
    /// `pending`, `active` or `retiring`.
    pub state: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub retire_after: Option<OffsetDateTime>,
}

/// A check of the last verification.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckBody {
    /// `dkim:<selector>`, `spf`, `dmarc` or `ptr:<ip>`.
    pub name: String,
    pub ok: bool,
    pub expected: String,
    pub found: String,
    /// Whether the domain's status depends on it (PTR checks are reported only).
    pub required: bool,
}

impl From<Check> for CheckBody {
    fn from(c: Check) -> Self {
        CheckBody {
            name: c.name,
            ok: c.ok,
            expected: c.expected,
            found: c.found,
            required: c.required,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DomainBody {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub domain: String,
    /// `pending` (records not seen yet), `verified`, or `failed` (a record is
    /// wrong, or a re-check stopped finding it).
    pub status: String,
    /// The selector that signs (RSA), or the first key's before any signs.
    pub dkim_selector: String,
    pub dns_records: Vec<DnsRecord>,
    pub keys: Vec<KeyBody>,
    pub ed25519: bool,
    pub checks: Vec<CheckBody>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub verified_at: Option<OffsetDateTime>,
    /// `dns`, or `admin` for a domain the admin trusted.
    pub verified_by: Option<String>,
    /// `dns` or `trust`.
    pub verify_method: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_checked_at: Option<OffsetDateTime>,
}

/// The answer of `POST /v1/domains/{id}/verify`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VerifyBody {
    /// `verified`, `pending` or `failed`.
    pub status: &'static str,
    pub checks: Vec<CheckBody>,
}

impl DomainBody {
    /// `ips`: the tenant's sending IPs, which the SPF record must cover.
    pub fn new(row: DomainRow, ips: &[IpAddr]) -> DomainBody {
        let mut records = Vec::new();
        for key in &row.keys {
            let purpose = match key.state.as_str() {
                "active" => "dkim",
                "pending" => "dkim_next",
                _ => "dkim_retiring",
            };
            let algorithm: DkimAlgorithm =
                key.algorithm.parse().unwrap_or(DkimAlgorithm::RsaSha256);
            records.push(DnsRecord {
                kind: "TXT".into(),
                name: format!("{}._domainkey.{}", key.selector, row.domain),
                value: dkim::txt_value(algorithm, &key.public_key),
                purpose: purpose.into(),
            });
        }
        records.push(DnsRecord {
            kind: "TXT".into(),
            name: row.domain.clone(),
            value: domain_check::spf_value(ips),
            purpose: "spf".into(),
        });
        records.push(DnsRecord {
            kind: "TXT".into(),
            name: format!("_dmarc.{}", row.domain),
            value: domain_check::dmarc_value(&row.domain),
            purpose: "dmarc".into(),
        });
        let rsa = |state: &str| {
            row.keys
                .iter()
                .find(|k| k.state == state && k.algorithm == DkimAlgorithm::RsaSha256.as_str())
        };
        let dkim_selector = rsa("active")
            .or_else(|| rsa("pending"))
            .map(|k| k.selector.clone())
            .unwrap_or_default();
        let checks: Vec<Check> = serde_json::from_value(row.checks).unwrap_or_default();
        DomainBody {
            id: row.id,
            tenant_id: row.tenant_id,
            domain: row.domain,
            status: row.status,
            dkim_selector,
            dns_records: records,
            keys: row
                .keys
                .into_iter()
                .map(|k| KeyBody {
                    selector: k.selector,
                    algorithm: k.algorithm,
                    state: k.state,
                    created_at: k.created_at,
                    retire_after: k.retire_after,
                })
                .collect(),
            ed25519: row.ed25519,
            checks: checks.into_iter().map(CheckBody::from).collect(),
            created_at: row.created_at,
            verified_at: row.verified_at,
            verified_by: row.verified_by,
            verify_method: row.verify_method,
            last_checked_at: row.last_checked_at,
        }
    }
}
