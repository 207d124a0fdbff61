-- fanout_route_add.lua: adds a worker's route to a user (ngx_chat_fanout.c)

local x = redis.call('HGET', 'chat:routes', ARGV[1])
if x then
  for v in string.gmatch(x, '%S+') do
    if v == ARGV[2] then return 0 end
  end
  x = x .. ' ' .. ARGV[2]
else
  x = ARGV[2]
end
redis.call('HSET', 'chat:routes', ARGV[1], x)
return 1
