//! Deployment files scenario (issue 20): the alerts and the dashboard.
//! `deploy/prometheus/alerts.yaml` holds exactly the seed's four alerts at the
//! seed's thresholds (error rate 0.05 over 5 m, backlog 1000 for 10 m, a query
//! slower than 2 s = `[database] slow_query_ms` 2000, bounce rate 0.15) plus
//! node down and heartbeat stalled, each with a summary and a description.
//! `deploy/grafana/penguin.json` is a Grafana dashboard with a Prometheus data
//! source variable and the panels the issue names; every metric either file
//! reads is one the code declares (`support::deploy_metrics`).

use std::collections::{BTreeMap, BTreeSet};

use penguin_config::Config;
use serde_yaml::Value;

use crate::support::deploy_metrics::assert_known_metrics;
use crate::support::deploy_text::{read, y_str, yaml_docs};

/// (where, expr) of every alert.
fn alert_exprs(alerts: &Value) -> BTreeMap<String, Value> {
    alerts["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .map(|r| (y_str(&r, "alert").expect("an alert name").to_string(), r))
        .collect()
}

#[test]
fn alerts_are_the_seeds_at_its_thresholds() {
    let alerts = alert_exprs(&yaml_docs("alerts.yaml", &read("deploy/prometheus/alerts.yaml"))[0]);
    let names: BTreeSet<&str> = alerts.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "PenguinBacklogHigh",
            "PenguinBounceRateHigh",
            "PenguinErrorRateHigh",
            "PenguinHeartbeatStalled",
            "PenguinNodeDown",
            "PenguinSlowQuery",
        ]
        .into()
    );
    // (alert, metric, threshold after the last comparison, for)
    let expected = [
        (
            "PenguinErrorRateHigh",
            "penguin_messages_total",
            "> 0.05",
            Some("5m"),
        ),
        (
            "PenguinBacklogHigh",
            "penguin_backlog_jobs{state=\"due\"}",
            "> 1000",
            Some("10m"),
        ),
        (
            "PenguinSlowQuery",
            "penguin_db_slow_queries_total",
            "> 0",
            None,
        ),
        (
            "PenguinBounceRateHigh",
            "penguin_messages_total{outcome=\"bounced\"}",
            "> 0.15",
            None,
        ),
        ("PenguinNodeDown", "up{job=\"penguin\"}", "== 0", Some("1m")),
        (
            "PenguinHeartbeatStalled",
            "penguin_heartbeat_timestamp_seconds",
            "> 30",
            Some("1m"),
        ),
    ];
    for (name, metric, threshold, duration) in expected {
        let rule = &alerts[name];
        let expr = y_str(rule, "expr").expect("expr");
        assert!(
            expr.contains(metric),
            "{name}: {expr} does not read {metric}"
        );
        assert!(
            expr.trim_end().ends_with(threshold),
            "{name}: {expr} is not `… {threshold}`"
        );
        assert_eq!(y_str(rule, "for"), duration, "{name}: for");
        for field in ["summary", "description"] {
            assert!(
                y_str(&rule["annotations"], field).is_some_and(|s| !s.is_empty()),
                "{name}: {field}"
            );
        }
        assert!(
            y_str(&rule["labels"], "severity").is_some(),
            "{name}: severity"
        );
    }
    assert!(
        y_str(&alerts["PenguinErrorRateHigh"], "expr")
            .unwrap_or_default()
            .contains("[5m]")
    );

    // A stalled heartbeat alerts only once the node's leases have lapsed.
    assert!(30_000 > Config::default().node.lease_ttl_ms);

    // A query slower than 2 s: the slow-query counter's threshold is
    // [database] slow_query_ms, 2000 by default, and no deployment changes it.
    let defaults = serde_json::to_value(Config::default()).expect("defaults serialise");
    assert_eq!(
        defaults["database"]["slow_query_ms"].as_u64(),
        Some(2000),
        "[database] slow_query_ms must exist with default 2000 (the seed's 2 s)"
    );
    for file in ["deploy/config/penguin.toml", "config/example.toml"] {
        let table: toml::Table = toml::from_str(&read(file)).expect("TOML");
        let set = table.get("database").and_then(|d| d.get("slow_query_ms"));
        assert!(
            set.is_none_or(|v| v.as_integer() == Some(2000)),
            "{file} changes slow_query_ms"
        );
    }
}

#[test]
fn dashboard_and_alerts_read_only_metrics_the_code_exports() {
    let mut exprs = Vec::new();
    let alerts = alert_exprs(&yaml_docs("alerts.yaml", &read("deploy/prometheus/alerts.yaml"))[0]);
    for (name, rule) in &alerts {
        exprs.push((
            format!("alerts.yaml {name}"),
            y_str(rule, "expr").unwrap_or_default().to_string(),
        ));
    }

    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/penguin.json")).expect("penguin.json is JSON");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a Prometheus data source variable"
    );
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "panel id twice"
        );
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().expect("a title");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"]
            .as_array()
            .filter(|t| !t.is_empty())
            .expect("targets");
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            exprs.push((format!("penguin.json \"{title}\""), expr.to_string()));
        }
    }
    let all: String = exprs
        .iter()
        .map(|(_, e)| e.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for needed in [
        "penguin_messages_total",
        "penguin_backlog_jobs",
        "penguin_pickup_latency_seconds_bucket",
        "penguin_ip_status",
        "penguin_ip_messages_total",
        "penguin_ip_health_trips_total",
        "penguin_ip_warmup_day",
        "penguin_ip_daily_limit_messages",
        "penguin_ip_sent_today_messages",
        "up{",
        "penguin_cluster_nodes",
        "penguin_owned_partitions",
        "penguin_heartbeat_timestamp_seconds",
        "penguin_db_pool_connections",
        "penguin_db_slow_queries_total",
        "penguin_db_query_duration_seconds_bucket",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(all.contains(needed), "the dashboard does not show {needed}");
    }
    assert_known_metrics(&exprs);
}
