-- presence_snapshot.lua: the presence of one user, for a new subscription
-- (ngx_chat_presence.c)

if redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf') > 0 then
  return body(ARGV[1], true, now) end
local ls = redis.call('GET', KEYS[2])
return body(ARGV[1], false, ls and tonumber(ls) or nil)
