-- Sequences (issue 18): follow-up steps sent to a lead in the same thread,
-- `delay_secs` after its previous step was sent, stopped for good by a reply,
-- a suppression (hard bounce, complaint, unsubscribe, manual) or a cancel.
--
-- Step 1 stays in `campaigns` (subject, text_body, html_body); the follow-ups
-- are `campaign_steps` rows 2..step_count. A follow-up whose subject is NULL is
-- threaded: the engine renders "Re: " and step 1's subject template.
CREATE TABLE campaign_steps (
    tenant_id    uuid NOT NULL,
    campaign_id  uuid NOT NULL,
    step         integer NOT NULL CHECK (step >= 2),
    delay_secs   integer NOT NULL CHECK (delay_secs >= 0),
    subject      text,
    text_body    text NOT NULL,
    html_body    text,
    PRIMARY KEY (tenant_id, campaign_id, step),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id) ON DELETE CASCADE
);

-- How many steps the campaign has, step 1 included.
ALTER TABLE campaigns
    ADD COLUMN step_count integer NOT NULL DEFAULT 1 CHECK (step_count BETWEEN 1 AND 100);

-- One job per (lead, step). A follow-up job is created by the write that
-- records its previous step `sent` (engine/src/store/ledger/outcome.rs), so a
-- crash can neither lose nor double it. `thread` holds the Message-IDs
-- (without angle brackets) of the lead's earlier steps, oldest first:
-- In-Reply-To is the last, References all of them. NULL for step 1.
ALTER TABLE send_jobs
    ADD COLUMN step integer NOT NULL DEFAULT 1 CHECK (step >= 1),
    ADD COLUMN thread text[];
ALTER TABLE send_jobs DROP CONSTRAINT send_jobs_tenant_id_campaign_id_lead_id_key;
ALTER TABLE send_jobs
    ADD CONSTRAINT send_jobs_lead_step UNIQUE (tenant_id, campaign_id, lead_id, step);

-- A stopped lead gets no further step. `stop_reason` is `replied` or the
-- suppression's reason; `replied_at` is set by the first reply only (so a
-- repeated reply records nothing).
ALTER TABLE leads
    ADD COLUMN stopped_at timestamptz,
    ADD COLUMN stop_reason text CHECK (stop_reason IN ('replied', 'hard_bounce', 'complaint',
                                                      'unsubscribe', 'manual')),
    ADD COLUMN replied_at timestamptz,
    ADD CONSTRAINT leads_stopped CHECK ((stopped_at IS NULL) = (stop_reason IS NULL));

-- The per-step rollup of `GET /v1/campaigns/{id}`'s `steps`: sent and bounced
-- from the Analytics batches, opened and clicked from the tracking routes (the
-- first open and the first click of a job), replied from `POST /v1/replies`.
CREATE TABLE campaign_step_stats (
    tenant_id    uuid NOT NULL,
    campaign_id  uuid NOT NULL,
    step         integer NOT NULL,
    sent         bigint NOT NULL DEFAULT 0,
    bounced      bigint NOT NULL DEFAULT 0,
    opened       bigint NOT NULL DEFAULT 0,
    clicked      bigint NOT NULL DEFAULT 0,
    replied      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, campaign_id, step)
);

-- The engagement index of V7 also covers replies (the per-day stats count a
-- campaign's `replied` events from it).
DROP INDEX delivery_events_engagement;
CREATE INDEX delivery_events_engagement
    ON delivery_events (tenant_id, campaign_id, created_at) INCLUDE (kind, job_id)
    WHERE kind IN ('open', 'click', 'complaint', 'unsubscribed', 'replied');

-- At most one `replied` and one `auto_replied` event per job.
CREATE UNIQUE INDEX delivery_events_reply ON delivery_events (tenant_id, job_id, kind)
    WHERE kind IN ('replied', 'auto_replied');

ALTER TABLE campaign_steps ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON campaign_steps
    USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid));
ALTER TABLE campaign_step_stats ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON campaign_step_stats
    USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid));

GRANT SELECT, INSERT ON campaign_steps TO penguin_tenant;
GRANT SELECT, INSERT, UPDATE ON campaign_step_stats TO penguin_tenant;
GRANT UPDATE (stopped_at, stop_reason, replied_at) ON leads TO penguin_tenant;

-- Every new suppression stops the address's sequences in its tenant: the
-- address's leads in campaigns with follow-ups are stopped (the follow-up
-- write reads the lead row FOR SHARE, so it orders before or after this) and
-- their waiting follow-ups cancelled; they never reach Redis. Step 1 jobs of
-- the address end `suppressed` at their claim, as without sequences. One
-- statement-level trigger: a batch of suppressions is one pass.
CREATE FUNCTION penguin_stop_suppressed_sequences() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH stopped AS (
        UPDATE leads l
        SET stopped_at = now(), stop_reason = a.reason
        FROM added a, campaigns c
        WHERE c.tenant_id = a.tenant_id AND c.step_count > 1
          AND c.status IN ('draft', 'scheduled', 'running', 'paused')
          AND l.tenant_id = a.tenant_id AND l.campaign_id = c.id AND l.email = a.email
          AND l.stopped_at IS NULL
        RETURNING l.tenant_id, l.campaign_id, l.id, l.stop_reason
    )
    UPDATE send_jobs j
    SET status = 'cancelled', updated_at = now(),
        last_reply = 'sequence stopped: ' || s.stop_reason
    FROM stopped s
    WHERE j.tenant_id = s.tenant_id AND j.campaign_id = s.campaign_id AND j.lead_id = s.id
      AND j.step > 1 AND j.status IN ('pending', 'deferred', 'queued');
    RETURN NULL;
END
$$;

CREATE TRIGGER suppressions_stop_sequences
    AFTER INSERT ON suppressions
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION penguin_stop_suppressed_sequences();
