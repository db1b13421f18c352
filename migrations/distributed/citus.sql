-- Distribution of the Penguin schema over a Citus cluster, sharded by tenant.
--
-- Apply once, on the coordinator, right after `penguin migrate` has created the
-- schema and before any node serves (distributing copies existing rows into
-- shards and takes the tables' locks). It is not a refinery migration: a plain
-- Postgres (the default, and every test) keeps every table local.
--
--   penguin migrate --config penguin.toml
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f migrations/distributed/citus.sql
--
-- Every tenant-owned table leads its primary key and indexes with `tenant_id`
-- (DESIGN.md §3a), so each is hash-distributed on it, all in one co-location
-- group: one tenant's campaigns, leads, jobs, events, rollups and IPs' usage
-- live on one worker, and every statement of the hot path (claim, outcome,
-- feed, rollups, import) filters on one tenant and runs there.
--
-- Reference tables (copied whole to every worker) are the shared ones and the
-- few that must be unique across tenants:
--   tenants, warmup_schedules, cluster_settings, partition_fences,
--   global_suppressions       no tenant_id, or shared by every tenant;
--   api_tokens                looked up by token hash before the tenant is known
--                             (UNIQUE (token_hash));
--   smtp_ips                  an address belongs to one tenant platform-wide
--                             (UNIQUE (address) WHERE status <> 'retired');
--   sending_domains           so does a domain (UNIQUE (lower(domain)));
--   audit_log                 admin-wide listing; its tenant_id may be null.
-- They are small and written rarely (an IP added, a takeover raising an epoch).
--
-- The order matters: a table is distributed after every table it references.
-- `tests/e2e/citus_ddl.rs` applies this file to the real schema with stand-ins
-- of the two Citus functions that enforce Citus' rules (the distribution column
-- in every primary key and unique index; foreign keys only to reference tables
-- or co-located ones, through the distribution column; reference tables
-- referencing only reference tables), and fails when a table of the schema is
-- in neither list, so a migration adding a table must add it here.
--
-- refinery_schema_history stays a local table of the coordinator.
--
-- Checked only against those stand-ins, not a real Citus: see
-- migrations/README.md ("Sharding by tenant") for what to verify there first
-- (the three triggers, RLS, the identity column of delivery_events).

-- Shared and cross-tenant tables, referenced ones first.
SELECT create_reference_table('tenants');
SELECT create_reference_table('warmup_schedules');
SELECT create_reference_table('cluster_settings');
SELECT create_reference_table('partition_fences');
SELECT create_reference_table('global_suppressions');
SELECT create_reference_table('api_tokens');
SELECT create_reference_table('smtp_ips');
SELECT create_reference_table('sending_domains');
SELECT create_reference_table('audit_log');

-- Tenant-owned tables: one co-location group, led by campaigns.
SELECT create_distributed_table('campaigns', 'tenant_id', colocate_with => 'none');
SELECT create_distributed_table('campaign_steps', 'tenant_id', colocate_with => 'campaigns');
SELECT create_distributed_table('leads', 'tenant_id', colocate_with => 'campaigns');
SELECT create_distributed_table('send_jobs', 'tenant_id', colocate_with => 'campaigns');
SELECT create_distributed_table('campaign_daily_stats', 'tenant_id', colocate_with => 'campaigns');
SELECT create_distributed_table('campaign_day_usage', 'tenant_id', colocate_with => 'campaigns');
SELECT create_distributed_table('campaign_minute_stats', 'tenant_id', colocate_with => 'campaigns');
SELECT create_distributed_table('campaign_step_stats', 'tenant_id', colocate_with => 'campaigns');
SELECT create_distributed_table('suppressions', 'tenant_id', colocate_with => 'campaigns');
SELECT create_distributed_table('ip_daily_stats', 'tenant_id', colocate_with => 'campaigns');
SELECT create_distributed_table('ip_hourly_usage', 'tenant_id', colocate_with => 'campaigns');
SELECT create_distributed_table('ip_shaping_actions', 'tenant_id', colocate_with => 'campaigns');
SELECT create_distributed_table('warmup_history', 'tenant_id', colocate_with => 'campaigns');
SELECT create_distributed_table('dkim_keys', 'tenant_id', colocate_with => 'campaigns');
SELECT create_distributed_table('webhooks', 'tenant_id', colocate_with => 'campaigns');
SELECT create_distributed_table('webhook_deliveries', 'tenant_id', colocate_with => 'campaigns');
SELECT create_distributed_table('webhook_attempts', 'tenant_id', colocate_with => 'campaigns');
-- Range-partitioned by month (V19): distributing the parent distributes every
-- partition, and the ones retention creates later.
SELECT create_distributed_table('delivery_events', 'tenant_id', colocate_with => 'campaigns');
SELECT create_distributed_table('delivery_event_keys', 'tenant_id', colocate_with => 'campaigns');
