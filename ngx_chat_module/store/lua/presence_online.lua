-- presence_online.lua: a session comes: the first live one of its user
-- publishes online (ngx_chat_presence.c)

local exp = now + tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local live = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], exp, ARGV[1])
redis.call('ZADD', KEYS[2], 'GT', exp, ARGV[3])
if live == 0 then pub(ARGV[3], true, now) end
return live
