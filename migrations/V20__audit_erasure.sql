-- Erasure on request and the audit log (issue 23, parts 3 and 4).
--
-- - `audit_log`: who changed what and when, written by the admin routes
--   (tenants, IPs, tokens, domains, erasures) and by a tenant's own erasures
--   and token changes, in the transaction of the change where the route holds
--   one. It never holds personal data: `actor` is `admin` or `tenant:<uuid>`,
--   `target` holds ids only, `detail` counts and the keyed hash of an erased
--   address (never the address). Read by the admin only (`GET /v1/audit`, on
--   the owner's role); `penguin_tenant` may INSERT (a tenant's erasure and
--   tokens) under its `tenant_isolation` policy, never read it back.
-- - Erasure (`DELETE /v1/leads?email=`, tenant; `POST /v1/erasures`, admin):
--   the tenant role may delete its leads and jobs and rewrite the `reply` text
--   of its events; suppressions (a tenant's and the global list) and a stopped
--   lead may carry the reason `erasure`.
-- - `delivery_events_created_at`: the oldest retained day of
--   `GET /v1/stats/storage` (`min(created_at)`) is one index probe. Created
--   only when no index of `delivery_events` leads with `created_at` yet (a
--   partitioned table may bring its own); on a partitioned table it is created
--   on every partition, present and future.
--
-- Written to hold whether `delivery_events` is a plain table or partitioned:
-- only grants and an index on it, by name.

CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL CHECK (actor ~ '^(admin|tenant:[0-9a-f-]{36})$'),
    tenant_id  uuid,
    action     text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)*$' AND length(action) <= 64),
    target     text CHECK (length(target) <= 200),
    detail     jsonb NOT NULL DEFAULT '{}'::jsonb
);
-- `GET /v1/audit`: newest first (the primary key), by tenant, by action.
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
CREATE INDEX audit_log_action ON audit_log (action, id);

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log
    USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid));

GRANT INSERT ON audit_log TO penguin_tenant;
GRANT USAGE ON SEQUENCE audit_log_id_seq TO penguin_tenant;

-- A tenant's erasure: its leads and their jobs go, its events' text is
-- rewritten (the rows and their counts stay).
GRANT DELETE ON leads, send_jobs TO penguin_tenant;
-- An erased job's once-only keys (V19) go with it: ids and link hashes only.
GRANT DELETE ON delivery_event_keys TO penguin_tenant;
GRANT UPDATE (reply) ON delivery_events TO penguin_tenant;

-- The reason `erasure` on both suppression lists and on a stopped lead (the
-- suppression's trigger stops the address's sequences with its reason).
ALTER TABLE suppressions DROP CONSTRAINT suppressions_reason_check;
ALTER TABLE suppressions ADD CONSTRAINT suppressions_reason_check
    CHECK (reason IN ('hard_bounce', 'complaint', 'unsubscribe', 'manual', 'erasure'));
ALTER TABLE global_suppressions DROP CONSTRAINT global_suppressions_reason_check;
ALTER TABLE global_suppressions ADD CONSTRAINT global_suppressions_reason_check
    CHECK (reason IN ('manual', 'spam_trap', 'litigator', 'complaint', 'hard_bounce',
                      'unsubscribe', 'erasure'));
ALTER TABLE leads DROP CONSTRAINT leads_stop_reason_check;
ALTER TABLE leads ADD CONSTRAINT leads_stop_reason_check
    CHECK (stop_reason IN ('replied', 'hard_bounce', 'complaint', 'unsubscribe', 'manual',
                           'bounced', 'erasure'));

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = 'delivery_events'::regclass AND a.attname = 'created_at'
    ) THEN
        CREATE INDEX delivery_events_created_at ON delivery_events (created_at);
    END IF;
END
$$;
