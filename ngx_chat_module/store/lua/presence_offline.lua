-- presence_offline.lua: a session ends: the last one of its user publishes
-- offline (ngx_chat_presence.c)

local gone = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #top > 0 then
  redis.call('ZADD', KEYS[2], top[2], ARGV[2])
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], now)
if gone == 1 then pub(ARGV[2], false, now) end
return gone
