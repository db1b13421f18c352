-- The database role of tenant API requests (DESIGN.md §2): not the tables' owner,
-- no superuser, no BYPASSRLS, so the `tenant_isolation` policies of V1/V2 apply
-- to it. The API switches to it per transaction (`SET LOCAL ROLE penguin_tenant`,
-- with `app.current_tenant_id` set alongside; engine/src/db.rs). It cannot log in.
--
-- Roles are cluster-wide while this migration runs once per database: several
-- databases of one server (tests, staging) create it at most once, and a race
-- between two of them is harmless. The migrating user needs CREATEROLE (or an
-- operator creates the role beforehand).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'penguin_tenant') THEN
        CREATE ROLE penguin_tenant NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

-- The owner (the API's login) switches to the role, so it must be a member.
GRANT penguin_tenant TO CURRENT_USER;

-- Exactly what the tenant routes need: campaigns (create, read, lifecycle; the
-- lifecycle and lead import lock the row, which needs UPDATE), leads (import),
-- send jobs (created by start and import, cancelled by cancel, counted by show
-- and pause), suppressions (list, add, remove; read by import), delivery events
-- (read).
GRANT SELECT, INSERT, UPDATE ON campaigns, send_jobs TO penguin_tenant;
GRANT SELECT, INSERT ON leads TO penguin_tenant;
GRANT SELECT, INSERT, DELETE ON suppressions TO penguin_tenant;
GRANT SELECT ON delivery_events TO penguin_tenant;
-- A tenant's complaint (feedback loop) about one of its messages: the
-- `complaint` event, one more complaint in the IP's daily rollup.
GRANT INSERT ON delivery_events TO penguin_tenant;
GRANT INSERT, UPDATE (complaints) ON ip_daily_stats TO penguin_tenant;
-- The caller's IPs: read with their usage, rollups and warm-up history (the IP
-- view, and a campaign's pool check), paused and resumed (status columns only).
GRANT SELECT ON smtp_ips, ip_hourly_usage, ip_daily_stats, warmup_history, warmup_schedules
    TO penguin_tenant;
GRANT UPDATE (status, status_reason, paused_until) ON smtp_ips TO penguin_tenant;
-- The caller's API tokens: issued (for an existing tenant), listed, revoked —
-- never reading a stored hash back.
GRANT SELECT ON tenants TO penguin_tenant;
GRANT SELECT (tenant_id, id, created_at, revoked_at), INSERT (tenant_id, id, token_hash),
      UPDATE (revoked_at) ON api_tokens TO penguin_tenant;
