-- history_latest.lua: the newest state of conversations PostgreSQL may not
-- have yet (ngx_chat_history.c): per conversation the counter, the newest
-- message, the caller's read seq, and the seqs of the caller's own
-- buffered messages above the higher read seq (newest first; they are not
-- unread). ARGV: the caller's userId, then PostgreSQL's read seq of each
-- conversation.

local function newest(k)
  local a = redis.call('LINDEX', k, -1)
  local b = redis.call('LINDEX', k, 0)
  if not a or a == b then return a or '' end
  local ok1, x = pcall(cjson.decode, a)
  local ok2, y = pcall(cjson.decode, b)
  if ok1 and ok2 and tonumber(y.seq or 0) > tonumber(x.seq or 0)
  then return b end
  return a
end
local function own(k, rd)
  local l, s = redis.call('LRANGE', k, 0, -1), {}
  local i, last, step = #l, 1, -1
  if #l > 1 then
    local ok1, x = pcall(cjson.decode, l[1])
    local ok2, y = pcall(cjson.decode, l[#l])
    if ok1 and ok2 and tonumber(x.seq or 0) > tonumber(y.seq or 0)
    then i, last, step = 1, #l, 1 end
  end
  for j = i, last, step do
    local ok, m = pcall(cjson.decode, l[j])
    if ok then
      local seq = tonumber(m.seq or 0)
      if seq <= rd then break end
      if m.senderId == ARGV[1] then s[#s + 1] = tostring(seq) end
    end
  end
  return s
end
local r = {}
for i = 1, #KEYS, 3 do
  local rd = redis.call('HGET', KEYS[i + 2], ARGV[1]) or ''
  r[#r + 1] = redis.call('GET', KEYS[i]) or ''
  r[#r + 1] = newest(KEYS[i + 1])
  r[#r + 1] = rd
  r[#r + 1] = own(KEYS[i + 1], math.max(tonumber(rd) or 0,
                  tonumber(ARGV[(i + 2) / 3 + 1]) or 0))
end
return r
