-- sockjs_claim.lua: a SockJS session's owner key (KEYS[1], chat:sj:<id>)
-- goes to this worker (ARGV[1]) if it still names the worker that is gone
-- (ARGV[2]) or nobody; PX ARGV[3]. Returns nil when taken, else the owner
-- it names now (ngx_chat_sockjs_relay.c).

local cur = redis.call('GET', KEYS[1])

if cur == false or cur == ARGV[2] or cur == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
    return false
end

return cur
