-- Sending domains (issue 16): verification state and DKIM keys sealed at rest.
--
-- A domain belongs to one tenant across the whole cluster (`sending_domains_name`).
-- Its DKIM keys live in `dkim_keys`, one row per selector: the private key only
-- sealed (AES-256-GCM under `[secrets] master_key`, the key's version beside it),
-- never in the clear. The tenant role may only read, and of `dkim_keys` every
-- column but the sealed key and its version: no tenant route can ever select a
-- private key, sealed or not.

ALTER TABLE sending_domains
    DROP COLUMN dkim_selector,
    DROP COLUMN dkim_key_sealed,
    ADD COLUMN status          text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'verified', 'failed')),
    ADD COLUMN checks          jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN ed25519         boolean NOT NULL DEFAULT false,
    ADD COLUMN verified_at     timestamptz,
    ADD COLUMN verified_by     text,
    ADD COLUMN verify_method   text CHECK (verify_method IN ('dns', 'trust')),
    ADD COLUMN last_checked_at timestamptz,
    ADD COLUMN updated_at      timestamptz NOT NULL DEFAULT now();

CREATE UNIQUE INDEX sending_domains_name ON sending_domains (lower(domain));
-- The daily re-check: verified domains by their last check.
CREATE INDEX sending_domains_recheck ON sending_domains (last_checked_at)
    WHERE status <> 'pending';

CREATE TABLE dkim_keys (
    tenant_id     uuid NOT NULL,
    domain_id     uuid NOT NULL,
    selector      text NOT NULL,
    algorithm     text NOT NULL CHECK (algorithm IN ('rsa-sha256', 'ed25519-sha256')),
    public_key    text NOT NULL,                 -- base64, the p= of the TXT record
    sealed_key    bytea NOT NULL,                -- PKCS#8, sealed; aad "<tenant>/<domain>/<selector>"
    key_version   text NOT NULL,                 -- which master key sealed it
    state         text NOT NULL CHECK (state IN ('pending', 'active', 'retiring')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    activated_at  timestamptz,
    retire_after  timestamptz,
    PRIMARY KEY (tenant_id, domain_id, selector),
    FOREIGN KEY (tenant_id, domain_id) REFERENCES sending_domains (tenant_id, id) ON DELETE CASCADE
);

-- The re-check's pruning of rotated-out keys whose grace has ended.
CREATE INDEX dkim_keys_retiring ON dkim_keys (retire_after) WHERE state = 'retiring';

ALTER TABLE dkim_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON dkim_keys USING (
    tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid));

-- Tenant routes only read under the tenant role; every write (which makes or
-- moves key material) runs on the owner's connection with explicit tenant filters.
GRANT SELECT ON sending_domains TO penguin_tenant;
GRANT SELECT (tenant_id, domain_id, selector, algorithm, public_key, state, created_at,
              activated_at, retire_after) ON dkim_keys TO penguin_tenant;
