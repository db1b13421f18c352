-- Reliable pop of up to ARGV[1] jobs across a tenant's priority lists, most urgent
-- band first. Each popped element is recorded in the in-flight sorted set with
-- score ARGV[2] (its deadline, unix ms) until the engine acknowledges it.
-- KEYS[1..3]: high, normal, low lists; KEYS[4]: the in-flight sorted set.
local want = tonumber(ARGV[1])
local out = {}
for i = 1, 3 do
  if want <= 0 then break end
  local items = redis.call('LPOP', KEYS[i], want)
  if items then
    for _, item in ipairs(items) do
      redis.call('ZADD', KEYS[4], ARGV[2], item)
      out[#out + 1] = item
    end
    want = want - #items
  end
end
return out
