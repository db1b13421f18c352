-- Issue 17, scheduled starts, lists and failed-job retry.

-- A campaign may be `scheduled`: started with a `start_at` in the future, its
-- jobs exist (`pending`) but the engine claims nothing of it until the Feeder
-- of the node owning its tenant's partition turns it `running` at `start_at`
-- (`engine::store::scheduled`). `start_at` is kept once set (what the
-- schedule was), and is null for a campaign started at once.
ALTER TABLE campaigns DROP CONSTRAINT campaigns_status_check;
ALTER TABLE campaigns ADD CONSTRAINT campaigns_status_check
    CHECK (status IN ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled'));
ALTER TABLE campaigns ADD COLUMN start_at timestamptz;

-- The Feeder's scan of scheduled campaigns per partition: small, scheduled
-- campaigns only, by start time.
CREATE INDEX campaigns_scheduled ON campaigns (start_at, tenant_id, id)
    WHERE status = 'scheduled';

-- `GET /v1/campaigns/{id}/jobs`: a campaign's jobs paged by id.
CREATE INDEX send_jobs_campaign_id ON send_jobs (tenant_id, campaign_id, id);

-- Failed-job retry (`POST /v1/campaigns/{id}/retry`): the attempts a job had
-- made when it was last requeued. The retry policy's `max_attempts` counts
-- the attempts since (`attempts - retry_base`), so a requeued job gets a fresh
-- budget while `attempts` keeps counting every SMTP attempt ever made.
ALTER TABLE send_jobs ADD COLUMN retry_base integer NOT NULL DEFAULT 0;
