-- messaging_send.lua: accepts a message: dedup, the next seq, the publish, the
-- history buffer (ngx_chat_messaging.c); a sender that had not accepted
-- has now (PostgreSQL learns it when the message is stored)

-- a cluster: the counter's stamp (KEYS[7]) is not the slot's epoch
-- (KEYS[6]): a failover since, the rebuild re-bases the counter first
if KEYS[7] and redis.call('GET', KEYS[7]) ~= redis.call('GET', KEYS[6]) then
  return {-1, redis.call('GET', KEYS[3]) or '0'} end
-- no clientMsgId: KEYS[4] is KEYS[1] (or '')
local dedup = KEYS[4] ~= '' and KEYS[4] ~= KEYS[1]
if dedup then
  local old = redis.call('GET', KEYS[4])
  if old then return {2, old} end
end
if ARGV[7] and ARGV[7] ~= '' and tonumber(ARGV[7])
   > tonumber(redis.call('GET', KEYS[2]) or '0') then return {7, ''} end
-- the mark of a sender that had not accepted: looked up in the members
-- (route() skips marks) when they are few, one command less per SEND
local members = redis.call('SMEMBERS', KEYS[1])
local mark, unmark = '?' .. ARGV[1], #members > 8
if not unmark then
  for _, m in ipairs(members) do
    if m == mark then unmark = true break end
  end
end
if unmark then redis.call('SREM', KEYS[1], mark) end
-- the seq as a string once (each number-to-string is a sprintf in Redis)
local n = redis.call('INCR', KEYS[2])
local seq = tostring(n)
local json = ARGV[3] .. seq .. ARGV[4]
route(members, '', ARGV[2] .. json)
redis.call('RPUSH', KEYS[5], json)
if n % 16 == 0 then
  redis.call('LTRIM', KEYS[5], -tonumber(ARGV[6]), -1) end
if dedup then
  redis.call('SET', KEYS[4], seq .. ' ' .. json, 'EX', ARGV[5]) end
return {1, seq}
