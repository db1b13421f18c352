-- Per-IP allowances, warm-up evaluation, health pauses and complaints (issue 4).

-- The hours of the IP's local day it sends in: [start, end), 0..24.
ALTER TABLE smtp_ips
    ADD COLUMN active_hours_start smallint NOT NULL DEFAULT 0
        CHECK (active_hours_start BETWEEN 0 AND 23),
    ADD COLUMN active_hours_end smallint NOT NULL DEFAULT 24
        CHECK (active_hours_end BETWEEN 1 AND 24),
    -- An automatic (health) pause ends here; NULL with status 'paused' = until resumed.
    ADD COLUMN paused_until timestamptz,
    -- Multiplies the IP's allowance and rate after a health pause; each healthy day
    -- doubles it back towards 1.
    ADD COLUMN rate_factor real NOT NULL DEFAULT 1
        CHECK (rate_factor > 0 AND rate_factor <= 1),
    ADD CONSTRAINT smtp_ips_active_hours CHECK (active_hours_start < active_hours_end);

-- Sends reserved per IP-local hour: written in the same statement that claims jobs
-- `sending`, so it never lags behind what left. Redis counters are rebuilt from it.
CREATE TABLE ip_hourly_usage (
    tenant_id  uuid NOT NULL,
    ip_id      uuid NOT NULL,
    hour       timestamptz NOT NULL,         -- start of the IP-local hour
    day        date NOT NULL,                -- the IP-local day of that hour
    reserved   integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    PRIMARY KEY (tenant_id, ip_id, hour)
);
CREATE INDEX ip_hourly_usage_day ON ip_hourly_usage (tenant_id, ip_id, day);

-- One row per IP-local day the Warmup actor judged; the primary key makes the
-- judgement happen once even across restarts and nodes.
CREATE TABLE warmup_history (
    tenant_id   uuid NOT NULL,
    ip_id       uuid NOT NULL,
    day         date NOT NULL,
    decision    text NOT NULL CHECK (decision IN ('advance', 'hold', 'step_back', 'rewarm')),
    from_day    integer NOT NULL,
    to_day      integer NOT NULL,
    sent        bigint NOT NULL,
    allowance   bigint,
    reason      text NOT NULL,
    decided_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, ip_id, day)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['ip_hourly_usage', 'warmup_history']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (tenant_id = '
            'NULLIF(current_setting(''app.current_tenant_id'', true), '''')::uuid)', t);
    END LOOP;
END
$$;
