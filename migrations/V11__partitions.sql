-- Ownership by partitions (DESIGN.md §4, issue 15): tenants hash into a fixed
-- number of partitions and nodes lease partitions, not tenants, so lease and
-- membership traffic follows the partition count, not the tenant count.

-- The partition of a tenant: the first 60 bits of SHA-256 over the id's 16 bytes,
-- modulo the partition count. `engine::partition::of` computes the same in Rust
-- (a unit test and an e2e test compare the two).
CREATE FUNCTION penguin_partition(tenant uuid, partitions integer) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT ((('x' || substr(encode(sha256(uuid_send(tenant)), 'hex'), 1, 15))::bit(60)::bigint)
                  % partitions)::integer $$;

-- The partition count is fixed for a cluster's life: the first node to start
-- records its `node.partitions`; a node configured otherwise refuses to start.
CREATE TABLE cluster_settings (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    partitions  integer NOT NULL CHECK (partitions BETWEEN 1 AND 4096)
);

-- Fencing tokens per partition: raised by every node that takes a partition's
-- lease. A job's `fence` (V8) now holds a token that names the partition in its
-- low 16 bits and the partition's epoch above them (`engine::store::fences`).
-- Tokens written before this migration (tenant epochs, small numbers) read as
-- epoch 0, which no partition ever has: they match nothing.
CREATE TABLE partition_fences (
    partition  integer PRIMARY KEY,
    epoch      bigint NOT NULL,
    node_id    text NOT NULL,
    taken_at   timestamptz NOT NULL
);

-- Due work is found per partition (`engine::store::due`): per running
-- campaign, its first waiting job by run_at. Both indexes are small: running
-- campaigns only, and waiting jobs only.
CREATE INDEX campaigns_running ON campaigns (tenant_id, id) WHERE status = 'running';
CREATE INDEX send_jobs_waiting ON send_jobs (tenant_id, campaign_id, run_at)
    WHERE status IN ('pending', 'deferred');

-- Tenant epochs are gone with tenant leases. Every node must run this version
-- (a rolling upgrade across it is not possible: stop every node, migrate,
-- start them); jobs left `sending` by the old nodes return to `pending` when
-- their partition is first taken.
DROP TABLE tenant_fences;
