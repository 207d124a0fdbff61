-- fanout_user.lua: publishes an event to one user (ngx_chat_fanout.c)

route({ARGV[1]}, '', ARGV[2])
return 1
