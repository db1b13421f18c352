-- Time-partitioned delivery events (issue 23).
--
-- `delivery_events` becomes a table partitioned by range of `created_at`: one
-- partition per calendar month (UTC), `delivery_events_pYYYYMM`, and the
-- DEFAULT partition `delivery_events_default`, a safety net so an insert never
-- fails for want of a partition (the engine's retention round creates months
-- ahead and moves any rows of a new month out of the default first;
-- engine/src/store/partitions.rs). A month past `[retention] events_days` is
-- dropped whole.
--
-- What stays the same for readers and writers:
-- - `id` is still an identity column of the (partitioned) table, drawn from
--   `pg_get_serial_sequence('delivery_events', 'id')`; existing rows keep their
--   ids and the sequence continues where the old one stood (it also served
--   `penguin_webhook_event_id()` for events without a row, so it may be past
--   max(id)).
-- - The primary key must hold the partition key: `(tenant_id, id, created_at)`.
--   A page by id is one index range scan per partition, merged.
-- - Every index of V1/V3/V7/V16 is rebuilt on the partitioned table
--   (`delivery_events_campaign`, `delivery_events_job`,
--   `delivery_events_engagement`); the RLS policy, the grants of V5 and the
--   statement trigger `delivery_events_webhooks` of V18 (transition tables are
--   allowed on a partitioned parent and see the rows of every partition; a
--   retention move writes into a partition directly, so it fires nothing).
--
-- The "once only" unique indexes (one open, one complaint, one click per link,
-- one replied/auto_replied per job) cannot exist on a partitioned table without
-- `created_at`, which differs between two attempts. They move to the
-- unpartitioned `delivery_event_keys`: a writer inserts the key first
-- (`ON CONFLICT DO NOTHING`) and the event only when its key row was inserted,
-- in the same statement. Keys of a job are deleted with the job by retention.
--
-- Campaign end: a cancelled campaign now records when (`cancelled_at`), as a
-- completed one has `completed_at`: the retention of a finished campaign's
-- jobs and leads counts from it. Cancelled campaigns of before this migration
-- count from the migration.
--
-- One-off copy: existing rows are copied in this migration's transaction
-- (INSERT … SELECT, indexes built after). See migrations/README.md for the
-- time it takes and what to do with a very large table instead.

-- 1. The old table steps aside (its index, constraint and sequence names are
--    freed for the new table). IF EXISTS: an operator with a huge table may
--    have put an empty stand-in in its place (migrations/README.md).
ALTER TABLE delivery_events RENAME TO delivery_events_v18;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint
               WHERE conrelid = 'delivery_events_v18'::regclass
                 AND conname = 'delivery_events_pkey') THEN
        ALTER TABLE delivery_events_v18
            RENAME CONSTRAINT delivery_events_pkey TO delivery_events_v18_pkey;
    END IF;
END
$$;
ALTER SEQUENCE delivery_events_id_seq RENAME TO delivery_events_v18_id_seq;
DROP INDEX IF EXISTS delivery_events_campaign;
DROP INDEX IF EXISTS delivery_events_job;
DROP INDEX IF EXISTS delivery_events_engagement;
DROP INDEX IF EXISTS delivery_events_one_complaint;
DROP INDEX IF EXISTS delivery_events_one_open;
DROP INDEX IF EXISTS delivery_events_one_click;
DROP INDEX IF EXISTS delivery_events_reply;
DROP TRIGGER IF EXISTS delivery_events_webhooks ON delivery_events_v18;

-- 2. The partitioned table, same columns in the same order.
CREATE TABLE delivery_events (
    tenant_id      uuid NOT NULL,
    id             bigint GENERATED ALWAYS AS IDENTITY,
    campaign_id    uuid NOT NULL,
    job_id         uuid NOT NULL,
    ip_id          uuid,
    kind           text NOT NULL,
    smtp_code      integer,
    enhanced_code  text,
    class          text,
    provider       text,
    reply          text,
    created_at     timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (created_at);

CREATE TABLE delivery_events_default PARTITION OF delivery_events DEFAULT;

-- Monthly partitions: every month that holds a row, and this month through
-- three ahead (the engine's first round creates `partitions_ahead` more).
DO $$
DECLARE
    m timestamp;
BEGIN
    FOR m IN
        SELECT DISTINCT date_trunc('month', created_at AT TIME ZONE 'UTC')
        FROM delivery_events_v18
        UNION
        SELECT date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => n)
        FROM generate_series(0, 3) AS n
        ORDER BY 1
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF delivery_events FOR VALUES FROM (%L) TO (%L)',
            'delivery_events_p' || to_char(m, 'YYYYMM'),
            (m AT TIME ZONE 'UTC')::text,
            ((m + interval '1 month') AT TIME ZONE 'UTC')::text);
    END LOOP;
END
$$;

-- 3. The copy, ids kept; the sequence continues where the old one stood.
INSERT INTO delivery_events OVERRIDING SYSTEM VALUE SELECT * FROM delivery_events_v18;
SELECT setval(pg_get_serial_sequence('delivery_events', 'id'), s.last_value, s.is_called)
FROM delivery_events_v18_id_seq s;

-- 4. The once-only keys, from the events that hold one today.
CREATE TABLE delivery_event_keys (
    tenant_id  uuid NOT NULL,
    job_id     uuid NOT NULL,
    kind       text NOT NULL,
    -- '' for once per job and kind; a click's md5 of its link.
    key        text NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, job_id, kind, key)
);
INSERT INTO delivery_event_keys (tenant_id, job_id, kind, key)
SELECT DISTINCT tenant_id, job_id, kind,
       CASE WHEN kind = 'click' THEN coalesce(md5(reply), '') ELSE '' END
FROM delivery_events_v18
WHERE kind IN ('open', 'click', 'complaint', 'replied', 'auto_replied');

DROP TABLE delivery_events_v18;

-- 5. Indexes (built once over the copied rows), policy, grants, trigger.
ALTER TABLE delivery_events ADD PRIMARY KEY (tenant_id, id, created_at);
CREATE INDEX delivery_events_campaign ON delivery_events (tenant_id, campaign_id, id);
CREATE INDEX delivery_events_job ON delivery_events (tenant_id, job_id);
CREATE INDEX delivery_events_engagement
    ON delivery_events (tenant_id, campaign_id, created_at) INCLUDE (kind, job_id)
    WHERE kind IN ('open', 'click', 'complaint', 'unsubscribed', 'replied');

ALTER TABLE delivery_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON delivery_events
    USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid));
ALTER TABLE delivery_event_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON delivery_event_keys
    USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid));

-- Complaints and replies are recorded under `penguin_tenant` (V5).
GRANT SELECT, INSERT ON delivery_events TO penguin_tenant;
GRANT SELECT, INSERT ON delivery_event_keys TO penguin_tenant;

CREATE TRIGGER delivery_events_webhooks
    AFTER INSERT ON delivery_events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION penguin_webhook_outbox();

-- 6. When a campaign was cancelled.
ALTER TABLE campaigns ADD COLUMN cancelled_at timestamptz;
UPDATE campaigns SET cancelled_at = now() WHERE status = 'cancelled';
