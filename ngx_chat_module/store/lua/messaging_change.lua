-- messaging_change.lua: accepts a change of a message (edit, delete,
-- reaction; PROTOCOL.md section 10): checks it against the message's state,
-- the next seq, the publish, the event in the history buffer and the
-- message's buffered copy brought up to date (ngx_chat_messaging.c)

-- a cluster: the counter's stamp (KEYS[7]) is not the slot's epoch
-- (KEYS[6]): a failover since, the rebuild re-bases the counter first
if KEYS[7] and redis.call('GET', KEYS[7]) ~= redis.call('GET', KEYS[6]) then
  return {-1, redis.call('GET', KEYS[3]) or '0'} end
local h, user, kind = KEYS[4], ARGV[1], ARGV[5]
local target, value = tonumber(ARGV[6]), ARGV[11]
local function seq_of(e)
  return tonumber(string.match(e or '', '"seq":(%d+)')) or 0
end
-- a buffered entry written again from its decoded table: its head (up to
-- its seq) stays as it was, so the buffer's seq search still works
local function rewrite(i, e, t, list)
  local head = string.match(e, '^(.-"seq":%d+)')
  t.type, t.messageId, t.conversationId, t.seq = nil, nil, nil, nil
  local rest = cjson.encode(t)
  if rest == '{}' then rest = '}' else rest = ',' .. string.sub(rest, 2) end
  redis.call('LSET', list or h, i, head .. rest)
end
-- the index of seq s in the buffer (written in seq order), or -1
local function find(s)
  local n = redis.call('LLEN', h)
  if n == 0 or seq_of(redis.call('LINDEX', h, 0))
                > seq_of(redis.call('LINDEX', h, -1)) then return -1 end
  local a, b = 0, n
  while a < b do
    local mid = math.floor((a + b) / 2)
    if seq_of(redis.call('LINDEX', h, mid)) >= s then b = mid
    else a = mid + 1 end
  end
  if a < n and seq_of(redis.call('LINDEX', h, a)) == s then return a end
  return -1
end
local idx, e, m = find(target), nil, nil
if idx >= 0 then
  e = redis.call('LINDEX', h, idx)
  local ok, t = pcall(cjson.decode, e)
  if ok then m = t else idx = -1 end
end
local sender, deleted, has
local function reacted(t)
  for _, u in ipairs(t or {}) do if u == user then return true end end
  return false
end
if m then
  if m.type ~= 'message' then return {7, ''} end
  sender, deleted = m.senderId, m.deleted == true
  has = reacted(m.reactions and m.reactions[value])
else
  -- older than the buffer: PostgreSQL's state, then the buffered changes
  -- of it that PostgreSQL may not have yet
  sender, deleted, has = ARGV[7], ARGV[8] == '1', ARGV[10] == '1'
  if sender == '' then return {8, ''} end
  local pat = '"target":' .. target .. ','
  for _, c in ipairs(redis.call('LRANGE', KEYS[5], 0, -1)) do
    if string.find(c, pat, 1, true) then
      local ok, t = pcall(cjson.decode, c)
      if ok and t.target == target then
        if t.type == 'message.deleted' then deleted = true
        elseif t.senderId == user and t.emoji == value then
          has = (t.type == 'reaction.added') end
      end
    end
  end
end
if deleted then return {8, ''} end
if kind == 'message.edited' then
  if sender ~= user then return {9, ''} end
elseif kind == 'message.deleted' then
  if sender ~= user and ARGV[9] ~= '1' then return {9, ''} end
elseif kind == 'reaction.added' then
  if has then return {3, ''} end
elseif not has then return {3, ''} end
if m then
  if kind == 'message.edited' then
    m.content, m.editedAt = value, ARGV[12]
  elseif kind == 'message.deleted' then
    m.content, m.metadata, m.deleted, m.deletedAt = '', {}, true, ARGV[12]
    m.editedAt, m.reactions = nil, nil
  else
    local r = m.reactions or {}
    local l = r[value] or {}
    if kind == 'reaction.added' then l[#l + 1] = user
    else
      local k = {}
      for _, u in ipairs(l) do if u ~= user then k[#k + 1] = u end end
      l = k
    end
    if #l == 0 then r[value] = nil else r[value] = l end
    if next(r) == nil then m.reactions = nil else m.reactions = r end
  end
  rewrite(idx, e, m)
end
if kind == 'message.deleted' then
  -- the old contents live in the buffered edits too
  local pat = '"target":' .. target .. ','
  local all = redis.call('LRANGE', KEYS[5], 0, -1)
  for i, c in ipairs(all) do
    if string.find(c, pat, 1, true)
       and string.find(c, '"type":"message.edited"', 1, true) then
      local ok, t = pcall(cjson.decode, c)
      if ok and t.target == target then
        local j = find(t.seq)
        t.content = ''
        local ok2, t2 = pcall(cjson.decode, c)
        rewrite(i - 1, c, t, KEYS[5])
        if j >= 0 and ok2 then
          t2.content = ''
          rewrite(j, redis.call('LINDEX', h, j), t2, h)
        end
      end
    end
  end
end
local seq = redis.call('INCR', KEYS[2])
local json = ARGV[3] .. seq .. ARGV[4]
route(redis.call('SMEMBERS', KEYS[1]), '', ARGV[2] .. json)
redis.call('RPUSH', h, json)
if seq % 16 == 0 then
  redis.call('LTRIM', h, -tonumber(ARGV[13]), -1) end
-- the changes alone, as far back as the buffer goes at least
redis.call('RPUSH', KEYS[5], json)
redis.call('LTRIM', KEYS[5], -(tonumber(ARGV[13]) + 16), -1)
return {1, tostring(seq)}
