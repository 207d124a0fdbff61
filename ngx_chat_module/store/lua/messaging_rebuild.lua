-- messaging_rebuild.lua: fills the membership cache from PostgreSQL's answer
-- (ngx_chat_messaging.c)

if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SADD', KEYS[1], '')
for i = 5, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
redis.call('EXPIRE', KEYS[1], 86400)
local floor = tonumber(ARGV[2])
local epoch = redis.call('GET', KEYS[4])
if not epoch then
  local t = redis.call('TIME')
  epoch = tostring(t[1] * 1000 + math.floor(t[2] / 1000))
  redis.call('SET', KEYS[4], epoch)
end
local cur = redis.call('GET', KEYS[2])
-- a cluster: KEYS[5], the counter's stamp; another epoch: a failover since
local stale = KEYS[5] and cur and redis.call('GET', KEYS[5]) ~= epoch
if KEYS[5] then redis.call('SET', KEYS[5], epoch) end
if cur and not stale then
  if tonumber(cur) < floor then redis.call('SET', KEYS[2], floor) end
  return 1
end
if stale then floor = math.max(floor, tonumber(cur)) end
if stale or tonumber(ARGV[3])
    < tonumber(string.match(epoch, '^%d+') or '0') then
  floor = floor + tonumber(ARGV[4]) end
redis.call('SET', KEYS[2], floor)
return 1
