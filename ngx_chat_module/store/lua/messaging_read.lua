-- messaging_read.lua: moves a read watermark forward and relays it
-- (ngx_chat_messaging.c). A move in a request accepts it: {6, seq}.

local last = tonumber(redis.call('GET', KEYS[2]))
local want = math.min(tonumber(ARGV[2]), last)
local old = tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0')
if want <= old then return {3, tostring(old)} end
redis.call('HSET', KEYS[4], ARGV[1], want)
local dl = tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0')
if dl < want then redis.call('HSET', KEYS[5], ARGV[1], want) end
route(redis.call('SMEMBERS', KEYS[1]), ARGV[1],
      ARGV[3] .. want .. ARGV[4])
if redis.call('SREM', KEYS[1], '?' .. ARGV[1]) == 1 then
  return {6, tostring(want)} end
return {1, tostring(want)}
