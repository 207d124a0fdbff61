-- route.lua: route(members, skip, msg) and unroute(user, route): publish once
-- per worker that has sessions of the users (ngx_chat_fanout.h); the marks
-- "!<user>" and "?<user>" of a membership cache (member.lua) are skipped;
-- publish(prefix, id, msg): PUBLISH on "<prefix><id>" (route_cluster.lua:
-- SPUBLISH on "<prefix>{<id>}", in the slot of id's keys)

local function publish(prefix, id, msg)
  redis.call('PUBLISH', prefix .. id, msg)
end

local function unroute(m, w)
  local x = redis.call('HGET', 'chat:routes', m)
  if not x then return end
  local rest = {}
  for v in string.gmatch(x, '%S+') do
    if v ~= w then rest[#rest + 1] = v end
  end
  if #rest == 0 then redis.call('HDEL', 'chat:routes', m)
  else redis.call('HSET', 'chat:routes', m, table.concat(rest, ' '))
  end
end
local function route(members, skip, msg)
  local to, order = {}, {}
  local function add(w, m)
    local l = to[w]
    if not l then l = {} to[w] = l order[#order + 1] = w end
    l[#l + 1] = m
  end
  -- asked only when a member has no route (rare: one command less per call)
  local lost
  local n, i = #members, 1
  while i <= n do
    local j = math.min(i + 999, n)
    local ws = redis.call('HMGET', 'chat:routes',
                          unpack(members, i, j))
    for k = i, j do
      local m, x = members[k], ws[k - i + 1]
      if m ~= '' and m ~= skip and not string.find(m, '^[!?]') then
        if x then
          if not string.find(x, ' ', 1, true) then add(x, m)
          else for w in string.gmatch(x, '%S+') do add(w, m) end end
        else
          if lost == nil then
            lost = redis.call('EXISTS', 'chat:routes') == 0 end
          if lost then redis.call('PUBLISH', 'chat:u:' .. m, msg) end
        end
      end
    end
    i = j + 1
  end
  for _, w in ipairs(order) do
    local l = to[w]
    if redis.call('PUBLISH', 'chat:w:' .. w,
                  table.concat(l, ' ') .. '\n' .. msg) == 0 then
      for _, m in ipairs(l) do unroute(m, w) end
    end
  end
end
