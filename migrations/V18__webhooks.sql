-- Webhooks (issue 19): a tenant's HTTP endpoints, the outbox of their
-- deliveries and every attempt made.
--
-- At least once, never lost: a delivery row is written by triggers in the same
-- transaction that records its event, whatever path records it (outcomes,
-- engagement, complaints, replies, unsubscribes, DSNs):
-- - `delivery_events_webhooks` (AFTER INSERT, per statement, over the inserted
--   rows) adds one `pending` delivery per inserted event and subscribed webhook
--   of the event's tenant; a statement whose tenants have no webhook inserts
--   nothing (one probe of `webhooks` by tenant);
-- - `campaigns_completed_webhooks` (AFTER UPDATE OF status, per row, only when
--   a campaign turns `completed`) adds the `campaign_completed` deliveries.
-- The dispatcher (actors/src/webhooks.rs) of the node owning the tenant's
-- partition sends them and records each attempt.

CREATE TABLE webhooks (
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id             uuid NOT NULL,
    url            text NOT NULL,
    events         text[] NOT NULL CHECK (cardinality(events) >= 1),
    description    text,
    -- The signing secret, sealed with `[secrets] master_key` (engine/src/secrets.rs,
    -- aad "<tenant_id>/<id>/webhook"), and that key's version.
    sealed_secret  bytea NOT NULL,
    secret_version text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

-- One row per webhook and event. `event_id` is the event's stable id receivers
-- deduplicate on: `delivery_events.id`, or for events without such a row
-- (`campaign_completed`, `test`) a number drawn from the same sequence, with
-- `event_at` (and `campaign_id`) set on the delivery itself.
CREATE TABLE webhook_deliveries (
    tenant_id       uuid NOT NULL,
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    webhook_id      uuid NOT NULL,
    event_id        bigint NOT NULL,
    kind            text NOT NULL,
    campaign_id     uuid,
    event_at        timestamptz,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, webhook_id) REFERENCES webhooks (tenant_id, id) ON DELETE CASCADE
);
-- The dispatcher: a webhook's earliest pending delivery, and its due batch.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (tenant_id, webhook_id, next_attempt_at)
    WHERE status = 'pending';
-- The API: a webhook's deliveries, newest first; pruning by age.
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (tenant_id, webhook_id, created_at);

-- Every attempt to deliver (a batch attempt writes one row per delivery in it).
CREATE TABLE webhook_attempts (
    tenant_id    uuid NOT NULL,
    delivery_id  uuid NOT NULL,
    attempt      integer NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    status_code  integer,
    error        text,
    duration_ms  integer NOT NULL,
    PRIMARY KEY (tenant_id, delivery_id, attempt),
    FOREIGN KEY (tenant_id, delivery_id) REFERENCES webhook_deliveries (tenant_id, id)
        ON DELETE CASCADE
);

ALTER TABLE webhooks ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhooks
    USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid));
ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_deliveries
    USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid));
ALTER TABLE webhook_attempts ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_attempts
    USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid));

-- The tenant routes: create, list, delete webhooks (never reading a sealed
-- secret back); list deliveries and attempts; queue a test delivery; send a
-- delivery again.
GRANT SELECT (tenant_id, id, url, events, description, created_at), INSERT, DELETE
    ON webhooks TO penguin_tenant;
GRANT SELECT, INSERT, UPDATE ON webhook_deliveries TO penguin_tenant;
GRANT SELECT ON webhook_attempts TO penguin_tenant;

-- The webhook kind of a delivery event's kind (the event table keeps the
-- engine's short names).
CREATE FUNCTION penguin_webhook_kind(kind text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE kind
        WHEN 'open' THEN 'opened'
        WHEN 'click' THEN 'clicked'
        WHEN 'complaint' THEN 'complained'
        WHEN 'delayed' THEN 'deferred'
        ELSE kind
    END
$$;

-- A fresh event id for an event without a `delivery_events` row: from that
-- table's own sequence, so it never equals another event's id.
CREATE FUNCTION penguin_webhook_event_id() RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT nextval(pg_get_serial_sequence('delivery_events', 'id'))
$$;
GRANT EXECUTE ON FUNCTION penguin_webhook_event_id() TO penguin_tenant;

-- The triggers run as the tables' owner (SECURITY DEFINER): whichever role
-- records an event (the engine, or a tenant route under `penguin_tenant`), its
-- deliveries are written.
CREATE FUNCTION penguin_webhook_outbox() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO webhook_deliveries (tenant_id, webhook_id, event_id, kind)
    SELECT e.tenant_id, w.id, e.id, penguin_webhook_kind(e.kind)
    FROM inserted e
    JOIN webhooks w ON w.tenant_id = e.tenant_id
                   AND penguin_webhook_kind(e.kind) = ANY (w.events);
    RETURN NULL;
END
$$;

CREATE TRIGGER delivery_events_webhooks
    AFTER INSERT ON delivery_events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION penguin_webhook_outbox();

CREATE FUNCTION penguin_webhook_campaign_completed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM webhooks w
               WHERE w.tenant_id = NEW.tenant_id AND 'campaign_completed' = ANY (w.events)) THEN
        INSERT INTO webhook_deliveries
            (tenant_id, webhook_id, event_id, kind, campaign_id, event_at)
        SELECT NEW.tenant_id, w.id, ev.id, 'campaign_completed', NEW.id,
               coalesce(NEW.completed_at, now())
        FROM webhooks w, (SELECT penguin_webhook_event_id() AS id) ev
        WHERE w.tenant_id = NEW.tenant_id AND 'campaign_completed' = ANY (w.events);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER campaigns_completed_webhooks
    AFTER UPDATE OF status ON campaigns
    FOR EACH ROW
    WHEN (NEW.status = 'completed' AND OLD.status IS DISTINCT FROM 'completed')
    EXECUTE FUNCTION penguin_webhook_campaign_completed();
