-- messaging_invalidate.lua: drops the membership cache of a conversation
-- (ngx_chat_messaging.c)

redis.call('INCR', KEYS[2]) redis.call('DEL', KEYS[1]) return 1
