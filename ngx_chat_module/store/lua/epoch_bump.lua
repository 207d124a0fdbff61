-- epoch_bump.lua: a replica became the primary of a slot (a failover): the
-- slot's epoch moves on, once per promotion whichever worker sees it first
-- (ngx_chat_redis_cluster.c); counters stamped with the old epoch are then
-- re-based before their next seq (messaging_send.lua, messaging_rebuild.lua)

local e = redis.call('GET', KEYS[1]) or ''
local tail = ':' .. ARGV[1]
if string.sub(e, -#tail) == tail then return 0 end
local t = redis.call('TIME')
redis.call('SET', KEYS[1], (t[1] * 1000 + math.floor(t[2] / 1000)) .. tail)
return 1
