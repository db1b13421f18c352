-- What reply rules and health breakers did to an IP's shaping units (issue 14):
-- one row per (IP, unit, action) in force — which rule, which unit (`key`, an
-- opaque name chosen by the Ip actor's shaping: today the provider) and
-- provider, from when until when, the factor and the resulting hourly rate.
-- Written by the Ip actor when it takes an action (a repeat while in force
-- updates the row and keeps `started_at`), read back when an Ip actor starts so
-- a restart or a hand-off to another node keeps a suspension or slow-down, and
-- shown by `GET /v1/ips/{id}`. Rows past `until` are deleted by the IP's next
-- action or start; all of an IP's rows go with the IP.
CREATE TABLE ip_shaping_actions (
    tenant_id          uuid NOT NULL,
    ip_id              uuid NOT NULL,
    key                text NOT NULL,
    action             text NOT NULL CHECK (action IN ('suspend', 'slow_down')),
    provider           text NOT NULL,
    rule               text NOT NULL,
    factor             double precision CHECK (factor > 0 AND factor <= 1),
    -- the hourly rate the unit may send at while the action holds (0: suspended)
    effective_per_hour integer NOT NULL CHECK (effective_per_hour >= 0),
    reason             text NOT NULL,
    started_at         timestamptz NOT NULL,
    until              timestamptz NOT NULL CHECK (until > started_at),
    PRIMARY KEY (tenant_id, ip_id, key, action),
    FOREIGN KEY (tenant_id, ip_id) REFERENCES smtp_ips (tenant_id, id) ON DELETE CASCADE
);

ALTER TABLE ip_shaping_actions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ip_shaping_actions USING (tenant_id =
    (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid));

-- `GET /v1/ips` and `GET /v1/ips/{id}` show them to the owning tenant.
GRANT SELECT ON ip_shaping_actions TO penguin_tenant;
