-- messaging_relay.lua: relays a typing event, at most once per interval
-- (ngx_chat_messaging.c). Typing in a request accepts it: {5, ""}.

local took = redis.call('SREM', KEYS[1], '?' .. ARGV[1]) == 1
local code = took and 5 or 1
if tonumber(ARGV[3]) > 0 and not redis.call('SET', KEYS[4], '1',
  'PX', ARGV[3], 'NX') then return {code, ''} end
route(redis.call('SMEMBERS', KEYS[1]), ARGV[1], ARGV[2])
return {code, ''}
