-- presence_renew.lua: renews a worker's sessions (ngx_chat_presence.c)
-- Two commands per session, the most frequent call of all (every session
-- every TTL/3): ZADD answers whether the session was gone (then the user
-- may have been offline), GT keeps the later expiry of the user.

local exp = now + tonumber(ARGV[1])
for i = 2, #ARGV - 1, 2 do
  local u = ARGV[i]
  local key = 'chat:p:{' .. u .. '}'
  if redis.call('ZADD', key, exp, ARGV[i + 1]) == 1 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if redis.call('ZCARD', key) == 1 then pub(u, true, now) end
  end
  redis.call('ZADD', KEYS[1], 'GT', exp, u)
end
return 1
