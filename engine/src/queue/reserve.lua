-- Reserves up to ARGV[2] sends of one IP in one local hour, within the day's and
-- the hour's limits. KEYS[1]: the IP's counter hash for the day.
-- ARGV: hour field, wanted, day limit (-1 = none), hour limit (-1 = none).
-- Returns {granted, day total, hour total, epoch} after the reservation, or
-- {-1, 0, 0, 0} when the counters are missing (rebuild them first).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, 0, 0, 0}
end
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
local day = tonumber(redis.call('HGET', KEYS[1], 'day') or '0')
local hour = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local n = tonumber(ARGV[2])
local day_limit = tonumber(ARGV[3])
local hour_limit = tonumber(ARGV[4])
if day_limit >= 0 then n = math.min(n, day_limit - day) end
if hour_limit >= 0 then n = math.min(n, hour_limit - hour) end
if n <= 0 then
  return {0, day, hour, epoch}
end
day = redis.call('HINCRBY', KEYS[1], 'day', n)
hour = redis.call('HINCRBY', KEYS[1], ARGV[1], n)
return {n, day, hour, epoch}
