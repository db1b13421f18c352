-- A campaign's engagement (opens, clicks, complaints, unsubscribes) read without
-- touching its delivery outcomes: `GET /v1/campaigns/{id}` (rates) and
-- `GET /v1/campaigns/{id}/stats` (per day) used to count them over every event
-- of the campaign, one heap row per message sent. This partial index holds only
-- engagement events (a few per hundred messages, none on the sending hot path)
-- with what those counts read, so they are index-only scans of the engagement
-- alone.
CREATE INDEX delivery_events_engagement
    ON delivery_events (tenant_id, campaign_id, created_at) INCLUDE (kind, job_id)
    WHERE kind IN ('open', 'click', 'complaint', 'unsubscribed');

-- Outcomes per campaign and minute, for the recent rates (and so the ETA) of
-- `GET /v1/campaigns/{id}`: written by the Analytics actor in the same
-- statement as the events and the daily rollups; rows older than an hour
-- before a batch are pruned by that batch, so a campaign keeps at most about
-- sixty. `finished` counts the final outcomes: sent, bounced, failed,
-- suppressed.
CREATE TABLE campaign_minute_stats (
    tenant_id    uuid NOT NULL,
    campaign_id  uuid NOT NULL,
    minute       timestamptz NOT NULL,
    sent         bigint NOT NULL DEFAULT 0,
    finished     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, campaign_id, minute)
);
ALTER TABLE campaign_minute_stats ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON campaign_minute_stats
    USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid));
GRANT SELECT ON campaign_minute_stats TO penguin_tenant;

INSERT INTO campaign_minute_stats (tenant_id, campaign_id, minute, sent, finished)
SELECT tenant_id, campaign_id, date_trunc('minute', created_at),
       count(*) FILTER (WHERE kind = 'sent'), count(*)
FROM delivery_events
WHERE kind IN ('sent', 'bounced', 'failed', 'suppressed')
  AND created_at >= now() - interval '1 hour'
GROUP BY 1, 2, 3;
