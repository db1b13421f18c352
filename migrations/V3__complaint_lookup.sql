-- Complaints (feedback loops, POST /v1/complaints): find the reported job by the
-- Message-ID the engine sent, find its `sent` event (for the provider), and
-- record at most one complaint per job.

-- A tenant's job by Message-ID (the operator's lookup walks the tenants, each an
-- index probe, so no index leaves the tenant-leading rule of DESIGN.md §3a).
CREATE INDEX send_jobs_message_id ON send_jobs (tenant_id, message_id)
    WHERE message_id IS NOT NULL;

-- The events of one job.
CREATE INDEX delivery_events_job ON delivery_events (tenant_id, job_id);

-- One complaint per job: a repeated report of the same message changes nothing,
-- even when two arrive at once (INSERT … ON CONFLICT DO NOTHING).
CREATE UNIQUE INDEX delivery_events_one_complaint ON delivery_events (tenant_id, job_id)
    WHERE kind = 'complaint';
