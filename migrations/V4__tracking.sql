-- Open and click tracking (/t/o/{token}, /t/c/{token}): the public routes record
-- `open` and `click` delivery events with INSERT … ON CONFLICT DO NOTHING, so a
-- reloaded pixel or a replayed link adds nothing. At most one open per job, and
-- one click per job and link (a click event keeps the link's URL in `reply`;
-- the index holds its md5, so a long URL never exceeds an index row).

CREATE UNIQUE INDEX delivery_events_one_open ON delivery_events (tenant_id, job_id)
    WHERE kind = 'open';

CREATE UNIQUE INDEX delivery_events_one_click ON delivery_events (tenant_id, job_id, (md5(reply)))
    WHERE kind = 'click';
