-- Suppressions beyond one address of one tenant (issue 19):
--
-- - a tenant's list also holds whole domains (`email` = '@example.com') and
--   entries that lapse (`expires_at`; NULL = for good);
-- - `global_suppressions`: the operator's list, for every tenant (spam traps,
--   litigator lists, domains that asked to be left alone), addresses and
--   domains, with a reason, an optional note and an optional expiry;
-- - `penguin_suppression(tenant, email, at)`: the one check every path uses
--   (lead import, the claim before sending, follow-ups, requeues): the first
--   entry in force at `at` for the address or its domain, on the tenant's list
--   or the global one, as a short text (`manual`, `litigator (global)`,
--   `manual (@example.com)`). A plain SQL set-returning function, so the
--   planner inlines it into the caller's statement: two primary-key probes in
--   that statement, no extra round trip.

ALTER TABLE suppressions ADD COLUMN expires_at timestamptz;

CREATE TABLE global_suppressions (
    email       text PRIMARY KEY,  -- an address, or '@domain' for the whole domain
    reason      text NOT NULL CHECK (reason IN ('manual', 'spam_trap', 'litigator',
                                                'complaint', 'hard_bounce', 'unsubscribe')),
    note        text CHECK (length(note) <= 500),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz
);

CREATE FUNCTION penguin_suppression(p_tenant uuid, p_email text, p_at timestamptz)
RETURNS TABLE (why text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT w.why FROM (
        SELECT CASE WHEN s.email LIKE '@%' THEN s.reason || ' (' || s.email || ')'
                    ELSE s.reason END AS why
        FROM suppressions s
        WHERE s.tenant_id = p_tenant
          AND s.email IN (p_email, '@' || substring(p_email FROM '[^@]*$'))
          AND (s.expires_at IS NULL OR s.expires_at > p_at)
        UNION ALL
        SELECT g.reason || CASE WHEN g.email LIKE '@%' THEN ' (global ' || g.email || ')'
                                ELSE ' (global)' END
        FROM global_suppressions g
        WHERE g.email IN (p_email, '@' || substring(p_email FROM '[^@]*$'))
          AND (g.expires_at IS NULL OR g.expires_at > p_at)
    ) AS w
    LIMIT 1
$$;

-- Tenant routes: add with an expiry (and replace an expired entry), and read
-- the global list through the check above (never list it: no route does).
GRANT UPDATE (reason, created_at, expires_at) ON suppressions TO penguin_tenant;
GRANT SELECT ON global_suppressions TO penguin_tenant;

-- Bounces after delivery (`POST /v1/bounces`): a permanent one stops the
-- lead's sequence like any bounce; `bounced` names it when the address itself
-- is not bad (a policy block), `hard_bounce` when it is.
ALTER TABLE leads DROP CONSTRAINT leads_stop_reason_check;
ALTER TABLE leads ADD CONSTRAINT leads_stop_reason_check
    CHECK (stop_reason IN ('replied', 'hard_bounce', 'complaint', 'unsubscribe', 'manual',
                           'bounced'));
-- … and moves its message from `sent` to `bounced` in the day's rollups, as
-- the tenant (RLS) when a tenant reports it.
GRANT UPDATE (sent, bounced) ON ip_daily_stats, campaign_daily_stats TO penguin_tenant;
