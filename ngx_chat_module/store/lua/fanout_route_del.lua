-- fanout_route_del.lua: removes a worker's route from a user
-- (ngx_chat_fanout.c)

unroute(ARGV[1], ARGV[2])
return 1
