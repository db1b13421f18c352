//! The rows of what comes back (issue 19): the tenant's event stream, bounces
//! after delivery (DSNs, not JSON: their hostile strings go into the report's
//! Message-ID), the operator's global suppression list, and webhooks.

use serde_json::json;

use super::cases::{Body, Case, Slot, Who, nobody};
use super::{Expect, Fixture, Hostile, INVALID, NOT_FOUND};
use crate::support::admin_token;

const DSN_TYPE: &str = "multipart/report; report-type=delivery-status; boundary=\"b\"";

/// A DSN about `message_id` with `action` and `status`, LF line endings.
fn dsn(message_id: &str, action: &str, status: &str) -> String {
    format!(
        "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\n\
         Final-Recipient: rfc822; lead@example.com\nAction: {action}\nStatus: {status}\n\
         Diagnostic-Code: smtp; 452 4.2.2 mailbox full\n\n--b\n\
         Content-Type: text/rfc822-headers\n\nMessage-ID: <{message_id}>\n\n--b--\n"
    )
}

fn invalid() -> Expect {
    Expect::Refused(422, "invalid_request")
}

pub fn feedback_cases(fx: &Fixture) -> Vec<Case> {
    let token = fx.token_a.as_str();
    let mut cases = Vec::new();
    cases.push(
        Case::new("GET", "/v1/events", Who::Tenant, token)
            .query("kind", "sent")
            .strings(Slot::Query("kind"), INVALID)
            .extra("after -1", invalid(), |c| c.with_query(&[("after", "-1")]))
            .extra("an unknown kind", invalid(), |c| {
                c.with_query(&[("kind", "sent,exploded")])
            })
            .extra("an unknown query parameter", invalid(), |c| {
                c.with_query(&[("hostile", "1")])
            })
            .extra("limit 1001", invalid(), |c| {
                c.with_query(&[("limit", "1001")])
            })
            .extra("campaign_id not a uuid", invalid(), |c| {
                c.with_query(&[("campaign_id", "nope")])
            }),
    );
    // The happy path is a delay: an event only, so later rows see a sent job.
    let mut bounces = Case::new("POST", "/v1/bounces", Who::Any, token)
        .body(Body::Raw(DSN_TYPE, dsn(&fx.message_id, "delayed", "4.2.2")))
        .extra(
            "JSON instead of a report",
            Expect::Refused(415, "unsupported_media_type"),
            |c| c.valid().with_body("application/json", b"{}".to_vec()),
        )
        .extra("a report without its status part", invalid(), |c| {
            let body =
                "--b\nContent-Type: text/rfc822-headers\n\nMessage-ID: <a@b.example>\n--b--\n";
            c.valid().with_body(DSN_TYPE, body.as_bytes().to_vec())
        })
        .extra("a feedback report", invalid(), |c| {
            let ct = "multipart/report; report-type=feedback-report; boundary=b";
            c.valid().with_body(ct, b"--b--\n".to_vec())
        })
        .extra("a malformed status", invalid(), {
            let body = dsn(&fx.message_id, "failed", "5.1");
            move |c: &Case| c.valid().with_body(DSN_TYPE, body.clone().into_bytes())
        })
        .happy(202);
    for hostile in Hostile::ALL {
        let body = dsn(&hostile.around(&fx.message_id), "failed", "5.1.1");
        let label = format!("{} in the Message-ID", hostile.label());
        bounces = bounces.extra(label, Expect::Untouched(202), move |c| {
            c.valid().with_body(DSN_TYPE, body.clone().into_bytes())
        });
    }
    cases.push(bounces);
    let paging = |case: Case| {
        case.query("limit", "10")
            .strings(Slot::Query("after"), INVALID)
            .extra("limit 0", invalid(), |c| c.with_query(&[("limit", "0")]))
            .extra("an unknown query parameter", invalid(), |c| {
                c.with_query(&[("limit", "10"), ("hostile", "1")])
            })
    };
    cases.push(paging(
        Case::new("GET", "/v1/suppressions/global", Who::Admin, admin_token())
            .query("after", "a@example.com"),
    ));
    cases.push(
        Case::new("POST", "/v1/suppressions/global", Who::Admin, admin_token())
            .body(Body::Json(json!({
                "emails": ["@trap.example"], "reason": "spam_trap", "note": "feed",
            })))
            .strings(Slot::Field("/emails/0"), [Expect::RowRejected; 3])
            .strings(Slot::Field("/reason"), INVALID)
            .strings(Slot::Field("/note"), INVALID)
            .extra("an expiry in the past", invalid(), |c| {
                let body =
                    json!({ "emails": ["x@example.com"], "expires_at": "2001-01-01T00:00:00Z" });
                c.request_with(None, Some(&body))
            }),
    );
    cases.push(
        Case::new(
            "DELETE",
            "/v1/suppressions/global/{email}",
            Who::Admin,
            admin_token(),
        )
        .param("{email}", "@trap.example")
        .strings(Slot::Path("{email}"), INVALID)
        .happy(204),
    );
    cases.extend(privacy_cases(fx));
    cases.extend(webhook_cases(fx));
    cases
}

/// Erasure (a tenant's, the admin's), the audit log, the storage sizes.
fn privacy_cases(fx: &Fixture) -> Vec<Case> {
    let token = fx.token_a.as_str();
    vec![
        Case::new("DELETE", "/v1/leads", Who::Tenant, token)
            .query("email", "erase-me@example.com")
            .strings(Slot::Query("email"), INVALID)
            .extra("no email", invalid(), |c| c.with_query(&[]))
            .extra("an invalid email", invalid(), |c| {
                c.with_query(&[("email", "not-an-address")])
            })
            .extra("an unknown query parameter", invalid(), |c| {
                c.with_query(&[("email", "erase-me@example.com"), ("hostile", "1")])
            }),
        Case::new("POST", "/v1/erasures", Who::Admin, admin_token())
            .body(Body::Json(
                json!({ "email": "erase-everywhere@example.com" }),
            ))
            .strings(Slot::Field("/email"), INVALID)
            .extra("an invalid email", invalid(), |c| {
                c.request_with(None, Some(&json!({ "email": "@example.com" })))
            }),
        Case::new("GET", "/v1/audit", Who::Admin, admin_token())
            .query("before", "9000000000000000000")
            .query("limit", "10")
            .query("action", "erasure")
            .strings(Slot::Query("before"), INVALID)
            .strings(Slot::Query("limit"), INVALID)
            .strings(Slot::Query("action"), INVALID)
            .extra("limit 1001", invalid(), |c| {
                c.with_query(&[("limit", "1001")])
            })
            .extra("limit 0", invalid(), |c| c.with_query(&[("limit", "0")]))
            .extra("tenant_id not a UUID", invalid(), |c| {
                c.with_query(&[("tenant_id", "12")])
            })
            .extra("an unknown query parameter", invalid(), |c| {
                c.with_query(&[("limit", "10"), ("hostile", "1")])
            }),
        Case::new("GET", "/v1/stats/storage", Who::Admin, admin_token()),
    ]
}

/// Webhooks: create, list, test, deliveries, retry, and delete last (its happy
/// path removes the fixture's webhook).
fn webhook_cases(fx: &Fixture) -> Vec<Case> {
    let token = fx.token_a.as_str();
    let hook = fx.webhook;
    vec![
        Case::new("POST", "/v1/webhooks", Who::Tenant, token)
            .body(Body::Json(json!({
                "url": "http://127.0.0.1:9/hook", "events": ["sent"], "description": "ops",
            })))
            .strings(Slot::Field("/url"), INVALID)
            .strings(Slot::Field("/events/0"), INVALID)
            .strings(Slot::Field("/description"), INVALID)
            .extra("a private address", invalid(), |c| {
                let body = json!({ "url": "http://10.0.0.1/hook", "events": ["sent"] });
                c.request_with(None, Some(&body))
            })
            .extra("an unknown kind", invalid(), |c| {
                let body = json!({ "url": "http://127.0.0.1:9/hook", "events": ["open"] });
                c.request_with(None, Some(&body))
            })
            .extra("no kind", invalid(), |c| {
                let body = json!({ "url": "http://127.0.0.1:9/hook", "events": [] });
                c.request_with(None, Some(&body))
            })
            .happy(201),
        Case::new("GET", "/v1/webhooks", Who::Tenant, token),
        Case::new("POST", "/v1/webhooks/{id}/test", Who::Tenant, token)
            .param("{id}", hook)
            .owned_by_path("{id}", nobody())
            .body(Body::OptionalJson(json!({})))
            .strings(Slot::Path("{id}"), NOT_FOUND)
            .happy(202),
        Case::new("GET", "/v1/webhooks/{id}/deliveries", Who::Tenant, token)
            .param("{id}", hook)
            .query("limit", "10")
            .owned_by_path("{id}", nobody())
            .strings(Slot::Path("{id}"), NOT_FOUND)
            .strings(Slot::Query("limit"), INVALID)
            .extra("an unknown query parameter", invalid(), |c| {
                c.with_query(&[("limit", "10"), ("status", "dead")])
            })
            .extra("limit 1001", invalid(), |c| {
                c.with_query(&[("limit", "1001")])
            }),
        Case::new(
            "POST",
            "/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
            Who::Tenant,
            token,
        )
        .param("{id}", hook)
        .param("{delivery_id}", fx.delivery)
        .owned_by_path("{id}", nobody())
        .body(Body::OptionalJson(json!({})))
        .strings(Slot::Path("{id}"), NOT_FOUND)
        .strings(Slot::Path("{delivery_id}"), NOT_FOUND)
        .happy(202),
        Case::new("DELETE", "/v1/webhooks/{id}", Who::Tenant, token)
            .param("{id}", hook)
            .owned_by_path("{id}", nobody())
            .strings(Slot::Path("{id}"), NOT_FOUND)
            .happy(204),
    ]
}
