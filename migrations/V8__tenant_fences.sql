-- Fencing tokens (DESIGN.md §3): a tenant's epoch, raised each time a node takes
-- the tenant's lease. The node keeps the epoch it raised and every job write it
-- makes is conditioned on it, so a node whose lease passed to another (paused
-- by the OS, cut off from Redis) can no longer change anything: its claims,
-- status writes and recoveries match no row. The epoch lives in Postgres, not
-- in Redis, because Redis may be emptied and must not hand out an old epoch.
CREATE TABLE tenant_fences (
    tenant_id  uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    epoch      bigint NOT NULL,
    node_id    text NOT NULL,
    taken_at   timestamptz NOT NULL
);

-- The epoch under which a job was last claimed `sending`: a status write from
-- the end of that attempt must carry the same epoch. A constant default adds
-- the column without rewriting the table.
ALTER TABLE send_jobs ADD COLUMN fence bigint NOT NULL DEFAULT 0;

-- Engine-only: the tenant role gets no privilege on it; the policy is there
-- like on every tenant-owned table.
ALTER TABLE tenant_fences ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_fences
    USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid));
