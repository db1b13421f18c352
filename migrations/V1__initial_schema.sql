-- Penguin Engine: the whole data model of DESIGN.md §2.
-- Every tenant-owned table leads its primary key with tenant_id (shardable by
-- tenant on Citus/Nile) and carries a row-level-security policy on
-- current_setting('app.current_tenant_id').

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          uuid NOT NULL,
    token_hash  bytea NOT NULL UNIQUE,          -- sha256 of the token; the token itself is never stored
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE warmup_schedules (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z0-9_-]{1,64}$'),
    daily_volumes integer[] NOT NULL CHECK (cardinality(daily_volumes) BETWEEN 1 AND 365),
    builtin       boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Built-in geometric ramps: day 1 .. N, the last value is the ceiling.
INSERT INTO warmup_schedules (name, daily_volumes, builtin)
SELECT 'conservative', array_agg(round(50 * power(175000 / 50.0, (d - 1) / 29.0))::int ORDER BY d), true
FROM generate_series(1, 30) AS d;
INSERT INTO warmup_schedules (name, daily_volumes, builtin)
SELECT 'aggressive', array_agg(round(200 * power(300000 / 200.0, (d - 1) / 13.0))::int ORDER BY d), true
FROM generate_series(1, 14) AS d;
INSERT INTO warmup_schedules (name, daily_volumes, builtin)
SELECT 'transactional', array_agg(round(100 * power(300000 / 100.0, (d - 1) / 20.0))::int ORDER BY d), true
FROM generate_series(1, 21) AS d;

CREATE TABLE smtp_ips (
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id               uuid NOT NULL,
    address          inet NOT NULL UNIQUE,      -- an address belongs to one tenant only
    helo_name        text NOT NULL,
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    status_reason    text,
    warmup_schedule  text REFERENCES warmup_schedules (name),   -- NULL: already warm
    warmup_day       integer NOT NULL DEFAULT 1 CHECK (warmup_day >= 1),
    timezone         text NOT NULL DEFAULT 'UTC',
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX smtp_ips_id ON smtp_ips (id);

CREATE TABLE sending_domains (
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id               uuid NOT NULL,
    domain           text NOT NULL,
    dkim_selector    text,
    dkim_key_sealed  bytea,                      -- AES-GCM sealed private key
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, domain)
);

CREATE TABLE campaigns (
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id               uuid NOT NULL,
    name             text NOT NULL,
    status           text NOT NULL DEFAULT 'draft'
                     CHECK (status IN ('draft', 'running', 'paused', 'completed', 'cancelled')),
    priority         integer NOT NULL DEFAULT 100 CHECK (priority BETWEEN 0 AND 1000),
    from_address     text NOT NULL,
    from_name        text,
    subject          text NOT NULL,
    text_body        text NOT NULL,
    html_body        text,
    ip_ids           uuid[] NOT NULL CHECK (cardinality(ip_ids) >= 1),
    daily_cap        integer CHECK (daily_cap > 0),
    send_window      jsonb,
    start_key        text,                       -- Idempotency-Key of the accepted start
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX campaigns_id ON campaigns (id);

CREATE TABLE leads (
    tenant_id    uuid NOT NULL,
    campaign_id  uuid NOT NULL,
    id           uuid NOT NULL,
    email        text NOT NULL,                  -- lower-cased at import
    fields       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, campaign_id, email),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id) ON DELETE CASCADE
);

-- One row per email. Status flow (DESIGN.md §2):
--   pending -> queued -> sending -> sent | deferred | bounced | failed | suppressed | cancelled
-- `deferred` waits like `pending` until run_at. Every transition is conditional.
CREATE TABLE send_jobs (
    tenant_id         uuid NOT NULL,
    id                uuid NOT NULL,
    campaign_id       uuid NOT NULL,
    lead_id           uuid NOT NULL,
    priority          integer NOT NULL,
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'queued', 'sending', 'sent', 'deferred',
                                        'bounced', 'failed', 'suppressed', 'cancelled')),
    run_at            timestamptz NOT NULL DEFAULT now(),
    attempts          integer NOT NULL DEFAULT 0,
    ip_id             uuid,
    message_id        text,
    last_reply        text,
    queued_at         timestamptz,
    first_attempt_at  timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, campaign_id, lead_id),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, lead_id) REFERENCES leads (tenant_id, id) ON DELETE CASCADE
);
-- The feeder's scan: due work of a tenant in priority order.
CREATE INDEX send_jobs_due ON send_jobs (tenant_id, priority, run_at)
    WHERE status IN ('pending', 'deferred');
-- Counts per campaign and state; completion checks.
CREATE INDEX send_jobs_campaign_status ON send_jobs (tenant_id, campaign_id, status);
-- The reaper's scan: jobs handed to Redis or to SMTP that may be orphaned.
CREATE INDEX send_jobs_in_flight ON send_jobs (tenant_id, status, updated_at)
    WHERE status IN ('queued', 'sending');

CREATE TABLE suppressions (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email       text NOT NULL,
    reason      text NOT NULL CHECK (reason IN ('hard_bounce', 'complaint', 'unsubscribe', 'manual')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, email)
);

-- Append-only; paged by id.
CREATE TABLE delivery_events (
    tenant_id      uuid NOT NULL,
    id             bigint GENERATED ALWAYS AS IDENTITY,
    campaign_id    uuid NOT NULL,
    job_id         uuid NOT NULL,
    ip_id          uuid,
    kind           text NOT NULL,                -- sent, deferred, bounced, failed, suppressed, ...
    smtp_code      integer,
    enhanced_code  text,
    class          text,
    provider       text,
    reply          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX delivery_events_campaign ON delivery_events (tenant_id, campaign_id, id);

CREATE TABLE campaign_daily_stats (
    tenant_id    uuid NOT NULL,
    campaign_id  uuid NOT NULL,
    day          date NOT NULL,
    sent         bigint NOT NULL DEFAULT 0,
    deferred     bigint NOT NULL DEFAULT 0,
    bounced      bigint NOT NULL DEFAULT 0,
    failed       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, campaign_id, day)
);

CREATE TABLE ip_daily_stats (
    tenant_id   uuid NOT NULL,
    ip_id       uuid NOT NULL,
    day         date NOT NULL,                   -- in the IP's timezone
    sent        bigint NOT NULL DEFAULT 0,
    deferred    bigint NOT NULL DEFAULT 0,
    bounced     bigint NOT NULL DEFAULT 0,
    failed      bigint NOT NULL DEFAULT 0,
    complaints  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, ip_id, day)
);

-- Row-level security: a session sees only the rows of app.current_tenant_id
-- (none when it is unset). The table owner bypasses it; the API role does not.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = NULLIF(current_setting('app.current_tenant_id', true), '')::uuid);
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['api_tokens', 'smtp_ips', 'sending_domains', 'campaigns', 'leads',
                             'send_jobs', 'suppressions', 'delivery_events',
                             'campaign_daily_stats', 'ip_daily_stats']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (tenant_id = '
            'NULLIF(current_setting(''app.current_tenant_id'', true), '''')::uuid)', t);
    END LOOP;
END
$$;
