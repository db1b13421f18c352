//! The rows of the `/v1` matrix, one [`Case`] per route, in the order they run
//! (happy paths last in each row, so lifecycle rows go start, pause, resume,
//! cancel). Each lists its valid request, its tenant-owned resource (another
//! tenant's token must get 404), and every string it takes with what each
//! hostile string must get (see `Expect`).

use serde_json::json;

use super::cases::{Body, Case, Slot, Who, nobody};
use super::{Expect, Fixture, Hostile, INVALID, NODE, NOT_FOUND};
use crate::support::admin_token;

const ROW_REJECTED: [Expect; 3] = [Expect::RowRejected; 3];
/// The highest UUID: every id-paged list walks below or above it.
const LAST_UUID: &str = "ffffffff-ffff-ffff-ffff-ffffffffffff";
/// A date range for the stats routes.
const FROM: &str = "2026-01-01";
const TO: &str = "2026-01-07";

/// Tenants, tokens, IPs, warm-up schedules and IP stats.
pub fn admin_cases(fx: &Fixture) -> Vec<Case> {
    let (a, token) = (fx.tenant_a, fx.token_a.as_str());
    let ip = fx.ip_a;
    vec![
        Case::new("POST", "/v1/tenants", Who::Admin, admin_token())
            .body(Body::Json(json!({ "name": "Hostile Corp" })))
            .strings(Slot::Field("/name"), INVALID)
            .happy(201),
        Case::new("GET", "/v1/tenants", Who::Admin, admin_token())
            .query("after", LAST_UUID)
            .query("limit", "10")
            .strings(Slot::Query("after"), INVALID)
            .strings(Slot::Query("limit"), INVALID)
            .extra("an unknown query parameter", invalid(), |c| {
                c.with_query(&[("limit", "10"), ("status", "running")])
            })
            .extra("after not a UUID", invalid(), |c| {
                c.with_query(&[("after", "12")])
            })
            .extra("limit 1001", invalid(), |c| {
                c.with_query(&[("limit", "1001")])
            }),
        Case::new("GET", "/v1/nodes", Who::Admin, admin_token()),
        Case::new("POST", "/v1/nodes/{id}/drain", Who::Admin, admin_token())
            .param("{id}", NODE)
            .body(Body::OptionalJson(json!({})))
            .strings(Slot::Path("{id}"), NOT_FOUND)
            .happy(202),
        Case::new("POST", "/v1/tenants/{id}/tokens", Who::Any, token)
            .param("{id}", a)
            .owned_by_path("{id}", nobody())
            .body(Body::OptionalJson(json!({})))
            .strings(Slot::Path("{id}"), NOT_FOUND)
            .happy(201),
        Case::new("GET", "/v1/tenants/{id}/tokens", Who::Any, token)
            .param("{id}", a)
            .owned_by_path("{id}", nobody())
            .strings(Slot::Path("{id}"), NOT_FOUND),
        Case::new(
            "DELETE",
            "/v1/tenants/{id}/tokens/{token_id}",
            Who::Any,
            token,
        )
        .param("{id}", a)
        .param("{token_id}", fx.spare_token)
        .owned_by_path("{id}", nobody())
        .strings(Slot::Path("{id}"), NOT_FOUND)
        .strings(Slot::Path("{token_id}"), NOT_FOUND),
        Case::new("POST", "/v1/tenants/{id}/ips", Who::Admin, admin_token())
            .param("{id}", a)
            .body(Body::Json(json!({
                "address": "127.0.0.9", "helo_name": "mta9.example.test",
                "warmup_schedule": "conservative", "timezone": "Europe/Paris",
                "active_hours": { "start": 8, "end": 20 },
            })))
            .strings(Slot::Path("{id}"), NOT_FOUND)
            .strings(Slot::Field("/address"), INVALID)
            .strings(Slot::Field("/helo_name"), INVALID)
            .strings(Slot::Field("/warmup_schedule"), INVALID)
            .strings(Slot::Field("/timezone"), INVALID)
            .happy(201),
        Case::new("GET", "/v1/ips", Who::Any, token),
        Case::new("GET", "/v1/ips/{id}", Who::Any, token)
            .param("{id}", ip)
            .owned_by_path("{id}", nobody())
            .strings(Slot::Path("{id}"), NOT_FOUND),
        Case::new("POST", "/v1/ips/{id}/pause", Who::Any, token)
            .param("{id}", ip)
            .owned_by_path("{id}", nobody())
            .body(Body::OptionalJson(json!({ "reason": "maintenance" })))
            .strings(Slot::Path("{id}"), NOT_FOUND)
            .strings(Slot::Field("/reason"), INVALID),
        Case::new("POST", "/v1/ips/{id}/resume", Who::Any, token)
            .param("{id}", ip)
            .owned_by_path("{id}", nobody())
            .body(Body::OptionalJson(json!({})))
            .strings(Slot::Path("{id}"), NOT_FOUND),
        Case::new("DELETE", "/v1/ips/{id}", Who::Admin, admin_token())
            .param("{id}", fx.spare_ip)
            .strings(Slot::Path("{id}"), NOT_FOUND)
            .happy(204),
        Case::new("GET", "/v1/ips/{id}/stats", Who::Any, token)
            .param("{id}", ip)
            .owned_by_path("{id}", nobody())
            .query("from", FROM)
            .query("to", TO)
            .strings(Slot::Path("{id}"), NOT_FOUND)
            .strings(Slot::Query("from"), INVALID)
            .strings(Slot::Query("to"), INVALID)
            .extra("an unknown query parameter", invalid(), |c| {
                c.with_query(&[("from", FROM), ("hostile", "1")])
            })
            .extra("from after to", invalid(), |c| {
                c.with_query(&[("from", TO), ("to", FROM)])
            }),
        Case::new("POST", "/v1/domains", Who::Any, token)
            .body(Body::Json(
                json!({ "domain": "hostile.example", "ed25519": true }),
            ))
            .strings(Slot::Field("/domain"), INVALID)
            .extra("tenant_id with a tenant token", invalid(), |c| {
                let body = json!({ "domain": "x.example", "tenant_id": nobody() });
                c.request_with(None, Some(&body))
            })
            .happy(201),
        Case::new("GET", "/v1/domains", Who::Any, token),
        Case::new("GET", "/v1/domains/{id}", Who::Any, token)
            .param("{id}", fx.domain)
            .owned_by_path("{id}", nobody())
            .strings(Slot::Path("{id}"), NOT_FOUND),
        Case::new("POST", "/v1/domains/{id}/verify", Who::Any, token)
            .param("{id}", fx.domain)
            .owned_by_path("{id}", nobody())
            .body(Body::OptionalJson(json!({})))
            .strings(Slot::Path("{id}"), NOT_FOUND)
            .extra(
                "trust with a tenant token",
                Expect::Refused(403, "forbidden"),
                |c| c.request_with(None, Some(&json!({ "trust": true }))),
            ),
        Case::new("POST", "/v1/domains/{id}/rotate", Who::Any, token)
            .param("{id}", fx.domain)
            .owned_by_path("{id}", nobody())
            .body(Body::OptionalJson(json!({})))
            .strings(Slot::Path("{id}"), NOT_FOUND),
        Case::new("DELETE", "/v1/domains/{id}", Who::Any, token)
            .param("{id}", fx.domain)
            .owned_by_path("{id}", nobody())
            .strings(Slot::Path("{id}"), NOT_FOUND)
            .happy(204),
        Case::new("GET", "/v1/warmup-schedules", Who::Any, token),
        Case::new("POST", "/v1/warmup-schedules", Who::Admin, admin_token())
            .body(Body::Json(
                json!({ "name": "hostile-ramp", "daily_volumes": [10, 20, 40] }),
            ))
            .strings(Slot::Field("/name"), INVALID)
            .happy(201),
        Case::new("GET", "/v1/warmup-schedules/{name}", Who::Any, token)
            .param("{name}", "conservative")
            .strings(Slot::Path("{name}"), NOT_FOUND),
    ]
}

/// A `start_at` 400 days from now (over the 366-day limit).
fn far_future() -> String {
    let at = time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(400 * 86_400);
    at.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

fn invalid() -> Expect {
    Expect::Refused(422, "invalid_request")
}

/// A campaign body with every string field present.
fn campaign(fx: &Fixture) -> serde_json::Value {
    json!({
        "name": "Spring outreach", "from": "hello@sender.example.com",
        "from_name": "Ann from Sender", "subject": "Hi {{ first_name }}",
        "text": "Hello {{ first_name }},\nhow are you?\n", "html": "<p>Hello {{ first_name }}</p>",
        "ip_ids": [fx.ip_a], "priority": 50, "daily_cap": 1000,
        "send_window": { "start": "09:00", "end": "17:00", "days": ["mon", "tue"],
                         "timezone": "Europe/Paris" },
        "steps": [{ "delay_secs": 86_400, "subject": "One more thing",
                    "text": "Hello again {{ first_name }}", "html": "<p>Again</p>" }],
    })
}

/// Campaigns, leads, lifecycle, events, stats, suppressions, complaints, replies.
pub fn tenant_cases(fx: &Fixture) -> Vec<Case> {
    let token = fx.token_a.as_str();
    let campaign_id = fx.campaign;
    // CR/LF and 100 KB are fine in a body template (multi-line, up to 1 MiB).
    let template = [Expect::Stored, invalid(), Expect::Stored];
    let csv = |c: &Case, text: String| c.valid().with_body("text/csv", text.into_bytes());
    let too_large = Expect::Refused(413, "payload_too_large");
    let mut cases = vec![
        Case::new("POST", "/v1/campaigns", Who::Tenant, token)
            .body(Body::Json(campaign(fx)))
            .strings(Slot::Field("/name"), INVALID)
            .strings(Slot::Field("/from"), INVALID)
            .strings(Slot::Field("/from_name"), INVALID)
            .strings(Slot::Field("/subject"), INVALID)
            .strings(Slot::Field("/text"), template)
            .strings(Slot::Field("/html"), template)
            .strings(Slot::Field("/ip_ids/0"), INVALID)
            .strings(Slot::Field("/send_window/start"), INVALID)
            .strings(Slot::Field("/send_window/end"), INVALID)
            .strings(Slot::Field("/send_window/days/0"), INVALID)
            .strings(Slot::Field("/send_window/timezone"), INVALID)
            .strings(Slot::Field("/steps/0/subject"), INVALID)
            .strings(Slot::Field("/steps/0/text"), template)
            .strings(Slot::Field("/steps/0/html"), template)
            .happy(201),
        Case::new("GET", "/v1/campaigns/{id}", Who::Tenant, token)
            .param("{id}", campaign_id)
            .owned_by_path("{id}", nobody())
            .strings(Slot::Path("{id}"), NOT_FOUND),
        Case::new("PATCH", "/v1/campaigns/{id}", Who::Tenant, token)
            .param("{id}", campaign_id)
            .owned_by_path("{id}", nobody())
            .body(Body::Json(json!({ "ip_ids": [fx.ip_a] })))
            .strings(Slot::Path("{id}"), NOT_FOUND)
            .strings(Slot::Field("/ip_ids/0"), INVALID)
            .happy(200),
    ];
    let mut leads = Case::new("POST", "/v1/campaigns/{id}/leads", Who::Tenant, token)
        .param("{id}", campaign_id)
        .owned_by_path("{id}", nobody())
        .body(Body::Json(json!({ "leads": [
            { "email": "hostile-lead@example.com", "fields": { "first_name": "Lea" } },
        ] })))
        .strings(Slot::Path("{id}"), NOT_FOUND)
        .strings(Slot::Field("/leads/0/email"), ROW_REJECTED)
        // A field may hold line breaks: rendering keeps them out of headers
        // (penguin_engine::message); NUL and 100 KB are refused per row.
        .strings(
            Slot::Field("/leads/0/fields/first_name"),
            [Expect::Stored, Expect::RowRejected, Expect::RowRejected],
        )
        .extra("an unknown field in a row", invalid(), |c| {
            let body = json!({ "leads": [{ "email": "x@example.com", "hostile": 1 }] });
            c.request_with(None, Some(&body))
        })
        .extra("CSV over api.max_import_bytes", too_large, move |c| {
            let rows: String = (0..20_000)
                .map(|i| format!("lead{i}@example.com\n"))
                .collect();
            csv(c, format!("email\n{rows}"))
        })
        .happy_body(json!({ "leads": [{ "email": "new@example.com" }] }));
    for hostile in Hostile::ALL {
        let email = hostile.around("csv@example.com").replace('"', "\"\"");
        let label = format!("CSV with a {} email", hostile.label());
        leads = leads.extra(label, Expect::RowRejected, move |c| {
            csv(c, format!("email,first_name\n\"{email}\",Ann\n"))
        });
    }
    cases.push(leads);
    // Before the lifecycle rows: a cancelled campaign's retry is 409.
    cases.push(
        Case::new("POST", "/v1/campaigns/{id}/retry", Who::Tenant, token)
            .param("{id}", campaign_id)
            .owned_by_path("{id}", nobody())
            .body(Body::Json(json!({ "status": "failed" })))
            .strings(Slot::Path("{id}"), NOT_FOUND)
            .strings(Slot::Field("/status"), INVALID)
            .extra("status sent", invalid(), |c| {
                c.request_with(None, Some(&json!({ "status": "sent" })))
            })
            .extra("an unknown field", invalid(), |c| {
                let body = json!({ "status": "failed", "hostile": 1 });
                c.request_with(None, Some(&body))
            }),
    );
    for action in ["start", "pause", "resume", "cancel"] {
        let route = match action {
            "start" => "/v1/campaigns/{id}/start",
            "pause" => "/v1/campaigns/{id}/pause",
            "resume" => "/v1/campaigns/{id}/resume",
            _ => "/v1/campaigns/{id}/cancel",
        };
        let mut case = Case::new("POST", route, Who::Tenant, token)
            .param("{id}", campaign_id)
            .owned_by_path("{id}", nobody())
            .body(Body::OptionalJson(json!({})))
            .strings(Slot::Path("{id}"), NOT_FOUND);
        if action == "start" {
            for (label, body) in [
                (
                    "start_at not RFC 3339",
                    json!({ "start_at": "tomorrow 9am" }),
                ),
                ("start_at a number", json!({ "start_at": 1_900_000_000 })),
                (
                    "start_at 400 days ahead",
                    json!({ "start_at": far_future() }),
                ),
                (
                    "a field besides start_at",
                    json!({ "start_at": null, "at": 1 }),
                ),
            ] {
                case = case.extra(label, invalid(), move |c: &Case| {
                    c.request_with(None, Some(&body))
                });
            }
            for (label, key) in [
                (
                    "an Idempotency-Key of 1000 characters",
                    "k".repeat(1000).into_bytes(),
                ),
                ("an Idempotency-Key with blanks", b"two words".to_vec()),
                ("an Idempotency-Key not ASCII", "clé".as_bytes().to_vec()),
            ] {
                case = case.extra(label, invalid(), move |c: &Case| {
                    c.valid().with_header("idempotency-key", &key)
                });
            }
        }
        cases.push(case);
    }
    let paging = |case: Case, after: &'static str| {
        case.query("after", after)
            .query("limit", "10")
            .strings(Slot::Query("after"), INVALID)
            .strings(Slot::Query("limit"), INVALID)
            .extra("an unknown query parameter", invalid(), |c| {
                c.with_query(&[("limit", "10"), ("hostile", "1")])
            })
            .extra("a repeated query parameter", invalid(), |c| {
                c.with_query(&[("limit", "10"), ("limit", "11")])
            })
            .extra("limit 0", invalid(), |c| c.with_query(&[("limit", "0")]))
            .extra("limit 1001", invalid(), |c| {
                c.with_query(&[("limit", "1001")])
            })
    };
    let dated = |case: Case| {
        case.query("from", FROM)
            .query("to", TO)
            .strings(Slot::Query("from"), INVALID)
            .strings(Slot::Query("to"), INVALID)
            .extra("an unknown query parameter", invalid(), |c| {
                c.with_query(&[("from", FROM), ("hostile", "1")])
            })
            .extra("a range over 400 days", invalid(), |c| {
                c.with_query(&[("from", "2020-01-01"), ("to", TO)])
            })
    };
    let events = Case::new("GET", "/v1/campaigns/{id}/events", Who::Tenant, token)
        .param("{id}", campaign_id)
        .owned_by_path("{id}", nobody())
        .strings(Slot::Path("{id}"), NOT_FOUND)
        .extra("after -1", invalid(), |c| c.with_query(&[("after", "-1")]));
    cases.push(paging(events, "0"));
    let campaigns = Case::new("GET", "/v1/campaigns", Who::Tenant, token)
        .query("status", "draft")
        .strings(Slot::Query("status"), INVALID)
        .extra("status unknown", invalid(), |c| {
            c.with_query(&[("status", "sent")])
        });
    cases.push(paging(campaigns, LAST_UUID));
    let jobs = Case::new("GET", "/v1/campaigns/{id}/jobs", Who::Tenant, token)
        .param("{id}", campaign_id)
        .owned_by_path("{id}", nobody())
        .query("status", "pending")
        .strings(Slot::Path("{id}"), NOT_FOUND)
        .strings(Slot::Query("status"), INVALID)
        .extra("status unknown", invalid(), |c| {
            c.with_query(&[("status", "scheduled")])
        });
    cases.push(paging(jobs, "00000000-0000-0000-0000-000000000000"));
    let stats = Case::new("GET", "/v1/campaigns/{id}/stats", Who::Tenant, token)
        .param("{id}", campaign_id)
        .owned_by_path("{id}", nobody())
        .strings(Slot::Path("{id}"), NOT_FOUND);
    cases.push(dated(stats));
    cases.push(dated(Case::new("GET", "/v1/stats", Who::Tenant, token)));
    let list = Case::new("GET", "/v1/suppressions", Who::Tenant, token);
    cases.push(paging(list, "a@example.com"));
    cases.push(
        Case::new("POST", "/v1/suppressions", Who::Tenant, token)
            .body(Body::Json(
                json!({ "emails": ["blocked@example.com"], "reason": "manual" }),
            ))
            .strings(Slot::Field("/emails/0"), ROW_REJECTED)
            .strings(Slot::Field("/reason"), INVALID)
            .extra("the engine's reason", invalid(), |c| {
                let body = json!({ "emails": ["x@example.com"], "reason": "hard_bounce" });
                c.request_with(None, Some(&body))
            }),
    );
    cases.push(
        Case::new("DELETE", "/v1/suppressions/{email}", Who::Tenant, token)
            .param("{email}", fx.suppressed)
            .owned_by_path("{email}", "never@example.com")
            .strings(Slot::Path("{email}"), INVALID)
            .happy(204),
    );
    let absent = "never-sent@sender.example.com";
    let mut complaints = Case::new("POST", "/v1/complaints", Who::Any, token)
        .body(Body::Json(json!({ "message_id": fx.message_id })))
        .owned_by_body(json!({ "message_id": absent }), &fx.message_id, absent)
        .strings(Slot::Field("/message_id"), INVALID)
        .extra("both message_id and job_id", invalid(), {
            let (message_id, job) = (fx.message_id.clone(), fx.job);
            move |c| {
                c.request_with(
                    None,
                    Some(&json!({ "message_id": message_id, "job_id": job })),
                )
            }
        })
        .happy(202);
    for hostile in Hostile::ALL {
        let job_id = hostile.around(&fx.job.to_string());
        let label = format!("{} in job_id", hostile.label());
        complaints = complaints.extra(label, invalid(), move |c| {
            c.request_with(None, Some(&json!({ "job_id": job_id })))
        });
    }
    cases.push(complaints);
    // An auto-reply: recorded once, stops nothing, so later rows see the same lead.
    let mut replies = Case::new("POST", "/v1/replies", Who::Tenant, token)
        .body(Body::Json(
            json!({ "message_id": fx.message_id, "auto": true }),
        ))
        .owned_by_body(
            json!({ "message_id": absent, "auto": true }),
            &fx.message_id,
            absent,
        )
        .strings(Slot::Field("/message_id"), INVALID)
        .extra("both message_id and campaign_id with email", invalid(), {
            let message_id = fx.message_id.clone();
            move |c| {
                let body = json!({ "message_id": message_id, "campaign_id": campaign_id,
                                   "email": "lead@example.com" });
                c.request_with(None, Some(&body))
            }
        })
        .extra(
            "neither message_id nor campaign_id with email",
            invalid(),
            |c| c.request_with(None, Some(&json!({ "auto": true }))),
        );
    for hostile in Hostile::ALL {
        let email = hostile.around("lead@example.com");
        let label = format!("{} in email", hostile.label());
        replies = replies.extra(label, invalid(), move |c| {
            let body = json!({ "campaign_id": campaign_id, "email": email });
            c.request_with(None, Some(&body))
        });
    }
    cases.push(replies);
    cases.extend(webhook_cases(fx));
    cases
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
