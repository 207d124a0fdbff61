-- receipts.lua: records delivered watermarks of a batch of users and relays
-- them (ngx_chat_receipts.c)

local cached = redis.call('EXISTS', KEYS[2]) == 1
local conv = cjson.encode(ARGV[1])
local out = {}
for i = 2, #ARGV - 1, 2 do
  local u, want = ARGV[i], ARGV[i + 1]
  if not cached or redis.call('SISMEMBER', KEYS[2], u) == 1 then
    local rd = redis.call('HGET', KEYS[3], u)
    if rd and tonumber(rd) > tonumber(want) then want = rd end
    local old = redis.call('HGET', KEYS[1], u)
    if not old or tonumber(old) < tonumber(want) then
      redis.call('HSET', KEYS[1], u, want)
      out[#out + 1] = '{"type":"delivered","conversationId":'
        .. conv .. ',"userId":' .. cjson.encode(u)
        .. ',"seq":' .. want .. ',"at":"' .. iso(now) .. '"}'
    end
  end
end
if cached and #out > 0 then
  route(redis.call('SMEMBERS', KEYS[2]), '',
        '/user/queue/receipts\n\n' .. table.concat(out, '\n'))
end
return out
