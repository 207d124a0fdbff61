-- member.lua: the membership check of the messaging scripts
-- (ngx_chat_messaging.c); "!<user>" is a member of a direct conversation
-- with a block between its two members

if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    if redis.call('SISMEMBER', KEYS[1], '!' .. ARGV[1]) == 1 then
      return {4, ''} end
    return {0, ''} end
  return {-1, redis.call('GET', KEYS[3]) or '0'} end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {-1, redis.call('GET', KEYS[3]) or '0'} end
