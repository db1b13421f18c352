-- The inputs of the warm-up verdict on IP-local day $3 of IP $2 (tenant $1):
-- the IP's position and ramp now, the day's reservations and outcomes, the last
-- earlier day with any send (by reservation or by outcome), and its creation day.
SELECT i.warmup_day,
       i.rate_factor,
       w.daily_volumes,
       (i.created_at AT TIME ZONE i.timezone)::date AS created_day,
       (SELECT coalesce(sum(u.reserved), 0)::int8
          FROM ip_hourly_usage u
         WHERE u.tenant_id = i.tenant_id AND u.ip_id = i.id AND u.day = $3) AS reserved,
       coalesce(s.sent, 0)::int8,
       coalesce(s.bounced, 0)::int8,
       coalesce(s.deferred, 0)::int8,
       coalesce(s.complaints, 0)::int8,
       greatest(
           (SELECT max(u.day) FROM ip_hourly_usage u
             WHERE u.tenant_id = i.tenant_id AND u.ip_id = i.id
               AND u.day < $3 AND u.reserved > 0),
           (SELECT max(d.day) FROM ip_daily_stats d
             WHERE d.tenant_id = i.tenant_id AND d.ip_id = i.id
               AND d.day < $3 AND d.sent + d.bounced + d.deferred > 0)
       ) AS last_send_day
  FROM smtp_ips i
  LEFT JOIN warmup_schedules w ON w.name = i.warmup_schedule
  LEFT JOIN ip_daily_stats s ON s.tenant_id = i.tenant_id AND s.ip_id = i.id AND s.day = $3
 WHERE i.tenant_id = $1 AND i.id = $2
