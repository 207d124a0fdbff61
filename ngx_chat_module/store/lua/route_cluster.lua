-- route_cluster.lua: route() and unroute() of route.lua for a Redis Cluster,
-- where a script cannot read the routes hash (another slot): one SPUBLISH on
-- the conversation's sharded channel "chat:c:{<conv>}" (the tag of the
-- script's keys, all of one conversation, so the channel is in the script's
-- slot and the publishes keep the order of the seqs), in the format of a
-- worker's route, "<user> <user>...\n<msg>": each worker subscribed to it
-- delivers to those of the users it has sessions of (ngx_chat_fanout.h);
-- the marks "!<user>" and "?<user>" of a membership cache (member.lua) are
-- skipped, as route.lua does. Past 64 users the list would make every copy
-- large: "*<skip>\n<msg>" instead, each worker delivering to its users that
-- are members but skip (ngx_chat_fanout.c knows them)

local function publish(prefix, id, msg)
  redis.call('SPUBLISH', prefix .. '{' .. id .. '}', msg)
end
local function unroute(m, w) end
local function route(members, skip, msg)
  local to = {}
  for _, m in ipairs(members) do
    if m ~= '' and m ~= skip and not string.find(m, '^[!?]') then
      to[#to + 1] = m
    end
  end
  local ch = 'chat:c:' .. string.match(KEYS[1], '{[^}]*}')
  if #to > 64 then
    redis.call('SPUBLISH', ch, '*' .. skip .. '\n' .. msg)
  elseif #to > 0 then
    redis.call('SPUBLISH', ch, table.concat(to, ' ') .. '\n' .. msg)
  end
end
