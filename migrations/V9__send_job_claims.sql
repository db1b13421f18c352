-- Claim ids: each `queued → sending` claim stamps its jobs with a fresh id, and
-- the outcome of that attempt is written only while the job still carries it.
-- The tenant's epoch (`fence`, V8) guards against another node; the claim guards
-- against this same node under the same epoch: when the Reaper returned a job
-- past `queue.sending_timeout_ms` and it was claimed again, the late outcome of
-- the first attempt must change nothing. NULL for jobs never claimed since; a
-- column without a default is added without rewriting the table. Engine-only:
-- `penguin_tenant` reads send_jobs but never writes this column.
ALTER TABLE send_jobs ADD COLUMN claim uuid;
