-- Campaign send windows and daily caps (issue 17): the knobs `send_window` and
-- `daily_cap` that V1 stored are honoured by the engine.
--
-- The window arithmetic lives here, once, as SQL functions: the due scan
-- (`engine::store::due`), both claims (`engine::store::ledger::claim`) and
-- `GET /v1/campaigns/{id}` (`engine::store::waiting`) all call them, so they
-- can never disagree about when a campaign may send. A window is the JSON the
-- API validated (`{start, end, days?, timezone?}`): open on `[start, end)` local
-- time in `timezone` (default UTC) on the listed `days` (default every day); it
-- wraps midnight when end < start, and then the day that counts is the day it
-- opened. A NULL window is always open.

-- The campaign's time zone: the window's, else UTC.
CREATE FUNCTION penguin_campaign_zone(w jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT coalesce(w->>'timezone', 'UTC') $$;

-- The campaign's local day at `at`: the day its daily cap counts in.
CREATE FUNCTION penguin_campaign_day(w jsonb, at timestamptz) RETURNS date
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT (at AT TIME ZONE penguin_campaign_zone(w))::date $$;

-- The start of the campaign's next local day after `at`.
CREATE FUNCTION penguin_campaign_next_day(w jsonb, at timestamptz) RETURNS timestamptz
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT (penguin_campaign_day(w, at) + 1)::timestamp AT TIME ZONE penguin_campaign_zone(w) $$;

-- Whether the window may open on local day `d` (its `days`, default all).
CREATE FUNCTION penguin_window_day(w jsonb, d date) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT jsonb_typeof(w->'days') IS DISTINCT FROM 'array'
              OR w->'days' ? (ARRAY['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'])
                               [extract(isodow FROM d)::integer] $$;

-- Whether the window is open at `at`.
CREATE FUNCTION penguin_window_open(w jsonb, at timestamptz) RETURNS boolean
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    AS $$
DECLARE
    local timestamp;
    s time;
    e time;
BEGIN
    IF w IS NULL OR jsonb_typeof(w) <> 'object' THEN
        RETURN true;
    END IF;
    local := at AT TIME ZONE penguin_campaign_zone(w);
    s := (w->>'start')::time;
    e := (w->>'end')::time;
    IF s < e THEN
        RETURN local::time >= s AND local::time < e AND penguin_window_day(w, local::date);
    END IF;
    -- Wraps midnight: the evening belongs to today's window, the small hours
    -- to yesterday's.
    RETURN (local::time >= s AND penguin_window_day(w, local::date))
        OR (local::time < e AND penguin_window_day(w, local::date - 1));
END
$$;

-- The earliest instant at or after `at` when the window is open: `at` itself
-- when it is open, else the next opening (within a week: `days` is never empty).
CREATE FUNCTION penguin_window_next(w jsonb, at timestamptz) RETURNS timestamptz
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    AS $$
DECLARE
    zone text;
    today date;
    opening timestamptz;
BEGIN
    IF penguin_window_open(w, at) THEN
        RETURN at;
    END IF;
    zone := penguin_campaign_zone(w);
    today := (at AT TIME ZONE zone)::date;
    FOR i IN 0..8 LOOP
        IF penguin_window_day(w, today + i) THEN
            opening := (today + i + (w->>'start')::time) AT TIME ZONE zone;
            IF opening > at THEN
                RETURN opening;
            END IF;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

-- Starts (claims `queued → sending`) per campaign and local day: the daily
-- cap's durable count, locked and raised by every claim in the claim's own
-- transaction, so the cap holds exactly under many nodes and restarts.
CREATE TABLE campaign_day_usage (
    tenant_id    uuid NOT NULL,
    campaign_id  uuid NOT NULL,
    day          date NOT NULL,
    started      integer NOT NULL DEFAULT 0 CHECK (started >= 0),
    PRIMARY KEY (tenant_id, campaign_id, day),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id) ON DELETE CASCADE
);

ALTER TABLE campaign_day_usage ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON campaign_day_usage USING (tenant_id =
    (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid));

-- `GET /v1/campaigns/{id}` reads it (`waiting_reason`, `next_send_at`).
GRANT SELECT ON campaign_day_usage TO penguin_tenant;

-- The earliest instant at or after `at` when the campaign may start a message
-- as far as its own knobs go: its window is open and, with a daily cap, its
-- local day's starts are below the cap (else the next local day's first
-- opening). `at` itself when it may send now.
CREATE FUNCTION penguin_campaign_ready(tenant uuid, campaign uuid, w jsonb, cap integer,
                                       at timestamptz) RETURNS timestamptz
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    AS $$
DECLARE
    used integer;
BEGIN
    IF cap IS NOT NULL THEN
        SELECT u.started INTO used FROM campaign_day_usage u
        WHERE u.tenant_id = tenant AND u.campaign_id = campaign
          AND u.day = penguin_campaign_day(w, at);
        IF coalesce(used, 0) >= cap THEN
            RETURN penguin_window_next(w, penguin_campaign_next_day(w, at));
        END IF;
    END IF;
    IF w IS NULL THEN
        RETURN at;
    END IF;
    RETURN penguin_window_next(w, at);
END
$$;
