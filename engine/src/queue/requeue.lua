-- Returns expired in-flight elements to the front of their band's list.
-- KEYS[1]: the in-flight sorted set; KEYS[2..4]: high, normal, low lists.
-- ARGV: pairs of (element, band index 1..3). An element acknowledged meanwhile
-- (ZREM returns 0) is not pushed back, so a job is never duplicated by the reaper.
local moved = 0
for i = 1, #ARGV, 2 do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('LPUSH', KEYS[1 + tonumber(ARGV[i + 1])], ARGV[i])
    moved = moved + 1
  end
end
return moved
