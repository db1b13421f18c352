//! Erasure and messages in flight (issue 23): while a job of the address is
//! `sending` (an SMTP transaction under way, whose outcome must find its
//! job), `DELETE /v1/leads?email=` answers 409 and changes nothing; a job
//! not yet in SMTP (pending or queued) is simply deleted — its claim then
//! finds no row. Once the transaction ends, the erasure goes through. The
//! admin's erasure meets the same 409 for that tenant, but leaves the address
//! on the global suppression list (no new message starts anywhere) and
//! finishes on a retry.

use serde_json::json;

use crate::support::api::{ApiServer, campaign_mid_smtp, count, finish_smtp, snapshot};
use crate::support::{TestEnv, admin_token};

#[tokio::test]
async fn an_address_mid_smtp_is_erased_only_once_its_transaction_ends() {
    let env = TestEnv::start().await;
    let server = ApiServer::start(&env, |_| {}).await;
    let api = &server.api;
    let (token, campaign) = campaign_mid_smtp(api, &env).await;
    let rows = env
        .psql(&format!(
            "SELECT l.email, j.status FROM send_jobs j JOIN leads l ON l.id = j.lead_id \
             WHERE j.campaign_id = '{campaign}' ORDER BY j.status = 'sending' DESC"
        ))
        .await;
    let (busy, idle): (String, String) = (rows[0].get(0), rows[1].get(0));
    assert_eq!(rows[0].get::<_, String>(1), "sending");

    let before = snapshot(&env).await;
    api.delete(&format!("/v1/leads?email={busy}"), Some(&token))
        .await
        .assert_error(409, "conflict");
    assert_eq!(
        snapshot(&env).await,
        before,
        "a refused erasure changed something"
    );

    // The other address's job is not in SMTP: it goes at once.
    let erased = api
        .delete(&format!("/v1/leads?email={idle}"), Some(&token))
        .await;
    let erased = erased.expect(200);
    assert_eq!(
        (erased["leads"].as_u64(), erased["jobs"].as_u64()),
        (Some(1), Some(1))
    );

    // The admin meets the same transaction: 409, but suppressed everywhere.
    api.post(
        "/v1/erasures",
        Some(admin_token()),
        &json!({ "email": busy }),
    )
    .await
    .assert_error(409, "conflict");
    let sql = format!("SELECT count(*) FROM global_suppressions WHERE email = '{busy}'");
    assert_eq!(count(&env, &sql).await, 1);
    let sql = format!("SELECT count(*) FROM leads WHERE email = '{busy}'");
    assert_eq!(
        count(&env, &sql).await,
        1,
        "the busy tenant was erased mid-SMTP"
    );

    // The transaction ends: the retry erases it.
    finish_smtp(&env, campaign).await;
    let done = api
        .post(
            "/v1/erasures",
            Some(admin_token()),
            &json!({ "email": busy }),
        )
        .await;
    let done = done.expect(200);
    assert_eq!(
        (done["tenants"].as_u64(), done["jobs"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(count(&env, &sql).await, 0);
    let sql = format!("SELECT count(*) FROM send_jobs WHERE campaign_id = '{campaign}'");
    assert_eq!(count(&env, &sql).await, 0);
}
