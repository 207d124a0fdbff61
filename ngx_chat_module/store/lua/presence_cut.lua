-- presence_cut.lua: a block: the presence subscriptions between two users
-- end on every worker that has one (ngx_chat_presence.c). ARGV: the two
-- users. The payload "cut <user>" is never a presence body (those are
-- JSON objects).

redis.call('PUBLISH', 'chat:presence:' .. ARGV[1], 'cut ' .. ARGV[2])
redis.call('PUBLISH', 'chat:presence:' .. ARGV[2], 'cut ' .. ARGV[1])
return 1
