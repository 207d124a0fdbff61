-- history_recent.lua: one page of a conversation's buffered messages, and
-- its watermarks (ngx_chat_history.c). Only the page is read out of the
-- list: its ends are found by binary search on the seqs (the buffer is
-- written oldest first, in seq order), never by decoding the messages.
-- KEYS: history list, delivered hash, read hash, changes list.
-- ARGV: before (0: none), after (-1: none), limit.
-- Returns {messages (oldest first), delivered, read, 1 if more matched,
-- the buffered change events (oldest first)}.

local before, after, limit =
  tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local h = KEYS[1]

-- a buffered message starts {"type":..,"messageId":..,"conversationId":..,
-- "seq":N: the first "seq": is its own
local function seq(e)
  return tonumber(string.match(e or '', '"seq":(%d+)')) or 0
end
local function seq_at(i) return seq(redis.call('LINDEX', h, i)) end

-- the first index in [0, n) whose seq satisfies above(seq), or n
local function search(n, above)
  local a, b = 0, n
  while a < b do
    local m = math.floor((a + b) / 2)
    if above(seq_at(m)) then b = m else a = m + 1 end
  end
  return a
end

local page, more = {}, 0
local n = redis.call('LLEN', h)

if n > 0 and seq_at(0) <= seq_at(-1) then
  local lo, hi = 0, n - 1
  if after >= 0 then
    lo = search(n, function (s) return s > after end)
  end
  if before > 0 then
    hi = search(n, function (s) return s >= before end) - 1
  end
  if hi - lo + 1 > limit then
    more = 1
    if after >= 0 then hi = lo + limit - 1 else lo = hi - limit + 1 end
  end
  if lo <= hi then page = redis.call('LRANGE', h, lo, hi) end

elseif n > 0 then
  -- written newest first by older versions: picked from all of it
  local all, keep = redis.call('LRANGE', h, 0, -1), {}
  for i = #all, 1, -1 do
    local s = seq(all[i])
    if (before <= 0 or s < before) and (after < 0 or s > after) then
      keep[#keep + 1] = all[i]
    end
  end
  local first, last = 1, #keep
  if #keep > limit then
    more = 1
    if after >= 0 then last = limit else first = #keep - limit + 1 end
  end
  for i = first, last do page[#page + 1] = keep[i] end
end

-- the buffered changes of messages (PROTOCOL.md section 10): PostgreSQL's
-- copy of a message of the page may not have them yet
local changes = redis.call('LRANGE', KEYS[4], 0, -1)

return {page, redis.call('HGETALL', KEYS[2]),
  redis.call('HGETALL', KEYS[3]), more, changes}
