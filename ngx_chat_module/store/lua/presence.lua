-- presence.lua: what the presence scripts share: the body of a presence event
-- and its publish (ngx_chat_presence.c)

local function body(u, on, ms)
  local ls = 'null'
  if ms then ls = '"' .. iso(ms) .. '"' end
  return '{"type":"presence","userId":' .. cjson.encode(u)
    .. ',"online":' .. (on and 'true' or 'false')
    .. ',"lastSeen":' .. ls .. '}'
end
-- publish() of route.lua, included before: chat:presence:<user>, in a
-- cluster chat:presence:{<user>}, in the user's slot like the script's keys
local function pub(u, on, ms)
  publish('chat:presence:', u, body(u, on, ms))
end
