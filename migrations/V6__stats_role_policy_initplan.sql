-- The statistics routes read the rollups under the tenant role (V5), like
-- every other tenant route: the role needs the per-campaign daily rollup.
GRANT SELECT ON campaign_daily_stats TO penguin_tenant;

-- Every tenant_isolation policy reads the tenant once per statement, not once
-- per row: the setting inside a scalar subquery becomes an InitPlan. The
-- function-call form parsed `current_setting(…)::uuid` for every row a tenant
-- statement wrote or read (a lead import of a million rows: a million GUC
-- lookups and uuid parses). Same predicate, same rows.
ALTER POLICY tenant_isolation ON tenants
    USING (id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid));
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['api_tokens', 'smtp_ips', 'sending_domains', 'campaigns', 'leads',
                             'send_jobs', 'suppressions', 'delivery_events',
                             'campaign_daily_stats', 'ip_daily_stats',
                             'ip_hourly_usage', 'warmup_history']
    LOOP
        EXECUTE format(
            'ALTER POLICY tenant_isolation ON %I USING (tenant_id = '
            '(SELECT NULLIF(current_setting(''app.current_tenant_id'', true), '''')::uuid))', t);
    END LOOP;
END
$$;
