-- presence_scan.lua: users whose sessions all expired go offline
-- (ngx_chat_presence.c)

local users = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now,
  'LIMIT', 0, tonumber(ARGV[2]))
for _, u in ipairs(users) do
  local key = 'chat:p:{' .. u .. '}'
  local last = tonumber(redis.call('ZSCORE', KEYS[1], u))
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #top > 0 then
    redis.call('ZADD', KEYS[1], top[2], u)
  else
    redis.call('ZREM', KEYS[1], u)
    local ls = math.min(math.max(last - tonumber(ARGV[1]), 0), now)
    redis.call('SET', 'chat:ls:{' .. u .. '}', ls)
    pub(u, false, ls)
  end
end
return #users
