-- presence_query.lua: the presence of users, for GET /presence
-- (ngx_chat_presence.c)

local out = {}
for i, u in ipairs(ARGV) do
  local on = redis.call('ZCOUNT', 'chat:p:{' .. u .. '}', '(' .. now, '+inf')
    > 0
  local ls = nil
  if on then ls = now else
    ls = redis.call('GET', 'chat:ls:{' .. u .. '}')
    if ls then ls = tonumber(ls) end
  end
  local j = '{"userId":' .. cjson.encode(u) .. ',"online":'
    .. (on and 'true' or 'false') .. ',"lastSeen":'
  if ls then j = j .. '"' .. iso(ls) .. '"}' else
    j = j .. 'null}' end
  out[i] = j
end
return out
