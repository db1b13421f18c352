//! Issue 22: every statement of the hot path stays inside one tenant, so the
//! schema can shard by `tenant_id` (`migrations/distributed/citus.sql`) with
//! each hot statement routed to one shard.
//!
//! The statements are not listed by hand: the scenario drives the real hot
//! path — leads imported through the API, campaigns started, jobs fed, popped,
//! claimed, sent to the sink (1 % of the recipients deferred, 1 % bounced:
//! below the health breakers), outcomes, events and rollups written — with
//! `auto_explain` on for the test's database (`session_preload_libraries`,
//! every statement, nested ones too, plans in JSON in the server's log). Every
//! plan logged that scans a table `citus.sql` distributes must pin each such
//! scan to a tenant:
//!
//! - by its own condition on `tenant_id` — equal to a parameter or a value, in
//!   a list (a partition's tenants), or equal to another row's `tenant_id`;
//! - or by a join condition that equates its `tenant_id` with another
//!   relation's, so no statement joins rows of different tenants;
//! - or, for the per-partition scans that find work (the Feeder's due scan, the
//!   scheduler, takeover recovery), by `penguin_partition(tenant_id, …)`: a
//!   partition's tenants. These are periodic and per node, never per message;
//!   on Citus they visit every shard, which BENCHMARKS.md-style figures of one
//!   node do not show.
//!
//! Statements that are not on the hot path and span tenants by design
//! (per-partition scans of the Feeder, the Reaper and the Gauges, retention,
//! storage sizes) are named in [`NOT_HOT`] with the reason; anything else that
//! spans tenants fails the test with its plan. The check needs the server's
//! log: it runs on the Postgres the harness starts, not on `DATABASE_URL`'s.

use std::collections::BTreeSet;
use std::time::Duration;

use penguin_engine::sink::{Rule, RuleStage};
use serde_json::Value;

use crate::support::rig::Rig;

const CITUS: &str = include_str!("../../migrations/distributed/citus.sql");

/// Statements that span tenants on purpose, by a fragment of their text, and
/// why that is no hot-path cost on a sharded Postgres.
const NOT_HOT: &[(&str, &str)] = &[
    (
        "SELECT count(*) FROM \"",
        "storage sizes (`GET /v1/stats/storage`, the storage gauges) count whole \
         tables by design: admin and periodic, never per message",
    ),
    (
        "DELETE FROM delivery_events_default WHERE ctid",
        "retention: expired events of the default partition in bounded batches \
         (monthly partitions are dropped whole)",
    ),
    (
        "c.status = 'completed' AND c.completed_at <",
        "retention: campaigns finished past their retention, one bounded batch a round",
    ),
    (
        "DELETE FROM dkim_keys WHERE state = 'retiring'",
        "DKIM key rotation: retired keys past `retire_after`, periodic maintenance",
    ),
    (
        "j.fence = ANY(",
        "the Reaper: jobs left `sending` past their deadline under this node's \
         fences (its partitions), once a reaper period",
    ),
];

/// The hot path's statements, by a fragment of their text: each must be
/// among those checked, so the scenario really drove it.
const HOT_PATH: &[(&str, &str)] = &[
    ("import: leads", "WITH input AS ("),
    (
        "import: jobs",
        "INSERT INTO send_jobs (tenant_id, id, campaign_id, lead_id",
    ),
    ("feed", "WITH ready AS MATERIALIZED"),
    ("claim", "ELSE 'sending' END"),
    ("outcome", "WITH done AS ("),
    ("events", "FROM inserted e"),
    ("rollups", "INSERT INTO campaign_step_stats"),
];

/// `penguin_partition(tenant_id, n)` as a plan prints it (the SQL function is
/// inlined): a scan of a partition's tenants.
const PARTITION_OF: &str = "sha256(uuid_send(tenant_id))";

/// The tables `citus.sql` distributes on `tenant_id`.
fn distributed_tables() -> BTreeSet<String> {
    CITUS
        .lines()
        .filter_map(|line| line.strip_prefix("SELECT create_distributed_table('"))
        .filter_map(|rest| rest.split('\'').next())
        .map(str::to_string)
        .collect()
}

/// The table a relation of a plan belongs to: a partition of
/// `delivery_events` (`delivery_events_y2026m12`, `…_default`) is its parent.
fn table_of(relation: &str, tables: &BTreeSet<String>) -> Option<String> {
    if tables.contains(relation) {
        return Some(relation.to_string());
    }
    tables
        .iter()
        .filter(|t| relation.starts_with(&format!("{t}_")))
        .max_by_key(|t| t.len())
        .cloned()
}

/// Every condition string of a plan node.
fn conditions(node: &Value) -> Vec<String> {
    [
        "Index Cond",
        "Recheck Cond",
        "Filter",
        "Join Filter",
        "Hash Cond",
        "Merge Cond",
        "TID Cond",
    ]
    .iter()
    .filter_map(|key| node.get(*key).and_then(Value::as_str))
    .map(str::to_string)
    .collect()
}

/// A scan of a distributed table found in a plan.
struct Scan {
    table: String,
    alias: String,
    own: Vec<String>,
}

/// Walks a plan: the scans of distributed tables, and every condition.
fn walk(node: &Value, tables: &BTreeSet<String>, scans: &mut Vec<Scan>, all: &mut Vec<String>) {
    let own = conditions(node);
    all.extend(own.iter().cloned());
    let modify = node.get("Node Type").and_then(Value::as_str) == Some("ModifyTable");
    if let Some(relation) = node.get("Relation Name").and_then(Value::as_str)
        && !modify
        && let Some(table) = table_of(relation, tables)
    {
        let alias = node
            .get("Alias")
            .and_then(Value::as_str)
            .unwrap_or(relation)
            .to_string();
        scans.push(Scan { table, alias, own });
    }
    if let Some(children) = node.get("Plans").and_then(Value::as_array) {
        for child in children {
            walk(child, tables, scans, all);
        }
    }
}

/// Whether `text` pins `column` (`tenant_id` or `alias.tenant_id`) to a
/// parameter, a parameter list or another relation's `tenant_id`.
fn pins(text: &str, column: &str) -> bool {
    let pinned_after = |rest: &str| {
        let rest = rest.trim_start_matches(['(', ' ']);
        rest.starts_with('$')
            || rest.starts_with('\'')
            || rest.starts_with("ANY (")
            || rest
                .split(')')
                .next()
                .is_some_and(|operand| operand.ends_with(".tenant_id"))
    };
    let mut from = 0;
    while let Some(at) = text[from..].find(column) {
        let start = from + at;
        let end = start + column.len();
        // A whole column name: not `x_tenant_id`, not `other.tenant_id` for the
        // unqualified form.
        let before = text[..start].chars().last();
        let whole = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
        if whole {
            let after = &text[end..];
            if let Some(rest) = after.strip_prefix(" = ")
                && pinned_after(rest)
            {
                return true;
            }
            // `$1 = tenant_id` / `x.tenant_id = tenant_id` written the other way.
            let left = text[..start].trim_end();
            if let Some(left) = left.strip_suffix(" =") {
                let operand = left.rsplit(['(', ' ']).next().unwrap_or("");
                if operand.starts_with('$')
                    || operand.ends_with("::uuid")
                    || operand.ends_with(".tenant_id")
                {
                    return true;
                }
            }
        }
        from = end;
    }
    false
}

/// Why a scan is not pinned to one tenant (or a partition's tenants), or
/// `None` when it is.
fn unpinned(scan: &Scan, all: &[String]) -> Option<String> {
    let own = scan
        .own
        .iter()
        .any(|c| pins(c, "tenant_id") || c.contains(PARTITION_OF));
    let qualified = format!("{}.tenant_id", scan.alias);
    let joined = all.iter().any(|c| pins(c, &qualified));
    (!own && !joined).then(|| {
        format!(
            "{} (as {}) is not pinned to a tenant",
            scan.table, scan.alias
        )
    })
}

/// Every plan `auto_explain` wrote to `log` (JSON): (query text, plan).
fn logged_plans(log: &str) -> Vec<(String, Value)> {
    let mut plans = Vec::new();
    let mut rest = log;
    while let Some(at) = rest.find("plan:") {
        rest = &rest[at + "plan:".len()..];
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        if let Some(Ok(value)) = values.next() {
            let query = value["Query Text"].as_str().unwrap_or_default().to_string();
            plans.push((query, value["Plan"].clone()));
            rest = &rest[values.byte_offset()..];
        }
    }
    plans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_hot_path_statement_stays_inside_one_tenant() {
    let rig = Rig::start(|_| {}).await;
    let log = rig
        .env
        .postgres_log()
        .expect("this check reads the server log of the Postgres the harness starts");
    let database = rig.env.database_name().to_string();
    for setting in [
        "session_preload_libraries = 'auto_explain'",
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_format = 'json'",
        "auto_explain.log_nested_statements = on",
    ] {
        rig.env
            .psql(&format!("ALTER DATABASE \"{database}\" SET {setting}"))
            .await;
    }
    // The node's pools connect again, with the settings.
    let mut rig = rig;
    rig.restart_node().await;

    // The hot path: imports, starts, feeds, claims, outcomes (sent, deferred,
    // bounced), events and rollups, for two tenants.
    rig.sink
        .set_rules(vec![
            Rule {
                recipient_pattern: "*50@*".into(),
                stage: RuleStage::Rcpt,
                reply: Some("451 4.3.0 try again".into()),
                times: Some(1),
                delay_ms: None,
                drop_connection: false,
            },
            Rule {
                recipient_pattern: "*77@*".into(),
                stage: RuleStage::Rcpt,
                reply: Some("550 5.1.1 no such user".into()),
                times: None,
                delay_ms: None,
                drop_connection: false,
            },
        ])
        .expect("sink rules");
    let scenario = rig
        .scenario(vec![vec!["127.0.0.2", "127.0.0.3"], vec!["127.0.0.4"]], 200)
        .await;
    scenario.start().await.expect("campaigns start");
    crate::support::wait_for_showing(
        "every job sent, bounced or deferred (some of each)",
        Duration::from_secs(120),
        || async {
            let counts = rig.job_counts().await;
            let n = |state: &str| counts.get(state).copied().unwrap_or(0);
            let done = n("sent") + n("bounced") + n("deferred");
            (done == 400 && n("bounced") > 0 && n("deferred") > 0)
                .then_some(())
                .ok_or(format!("{counts:?}"))
        },
    )
    .await;

    rig.shutdown().await;

    let tables = distributed_tables();
    assert!(tables.contains("send_jobs") && tables.contains("delivery_events"));
    let text = std::fs::read_to_string(&log).expect("the server log");
    let plans = logged_plans(&text);
    let mut checked = BTreeSet::new();
    let mut failures = std::collections::BTreeMap::new();
    for (query, plan) in &plans {
        if NOT_HOT.iter().any(|(fragment, _)| query.contains(fragment)) {
            continue;
        }
        let (mut scans, mut all) = (Vec::new(), Vec::new());
        walk(plan, &tables, &mut scans, &mut all);
        if scans.is_empty() {
            continue;
        }
        checked.insert(query.clone());
        let why: Vec<String> = scans.iter().filter_map(|s| unpinned(s, &all)).collect();
        if !why.is_empty() {
            failures.entry(query.clone()).or_insert_with(|| {
                format!(
                    "{}:\n{query}\n{}",
                    why.join("; "),
                    serde_json::to_string_pretty(plan).unwrap_or_default()
                )
            });
        }
    }
    println!(
        "{} plans logged, {} statements scanning distributed tables checked",
        plans.len(),
        checked.len()
    );
    for (step, fragment) in HOT_PATH {
        assert!(
            checked.iter().any(|query| query.contains(fragment)),
            "the {step} statement (`{fragment}`) was not among those checked"
        );
    }
    assert!(
        failures.is_empty(),
        "{} statements span tenants:\n\n{}",
        failures.len(),
        failures.into_values().collect::<Vec<_>>().join("\n\n")
    );
    assert!(
        checked.len() >= 20,
        "only {} statements seen",
        checked.len()
    );
}

#[test]
fn pins_reads_the_conditions_a_plan_prints() {
    assert!(pins("(tenant_id = $1)", "tenant_id"));
    assert!(pins("((tenant_id = $1) AND (id = ANY ($2)))", "tenant_id"));
    assert!(pins("(tenant_id = ANY ($1))", "tenant_id"));
    assert!(pins(
        "((tenant_id = j.tenant_id) AND (id = j.lead_id))",
        "tenant_id"
    ));
    assert!(pins("(j.tenant_id = c.tenant_id)", "j.tenant_id"));
    assert!(pins("(c.tenant_id = j.tenant_id)", "j.tenant_id"));
    assert!(pins("($1 = tenant_id)", "tenant_id"));
    assert!(!pins("(status = 'pending'::text)", "tenant_id"));
    assert!(!pins("(j.id = c.id)", "j.tenant_id"));
    assert!(!pins("(x_tenant_id = $1)", "tenant_id"));
    assert!(
        !pins("(c.tenant_id = $1)", "tenant_id"),
        "another relation's column"
    );
    assert!(!pins("(tenant_id IS NOT NULL)", "tenant_id"));
    assert!(pins(
        "(tenant_id = '01a251e8-d1d7-74d0-9df8-41de5ad22c72'::uuid)",
        "tenant_id"
    ));
}
