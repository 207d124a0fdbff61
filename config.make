# config.make: nginx's ./configure appends this to objs/Makefile (after
# "config"): the rule that turns the Redis scripts, ngx_chat_module/store/
# lua/*.lua, into C (objs/ngx_chat_lua.h) with a POSIX sh and sed script.
# A new .lua file needs ./configure again.

ngx_chat_lua_dir="$ngx_addon_dir/ngx_chat_module/store/lua"
ngx_chat_lua_files=`echo $ngx_chat_lua_dir/*.lua`

cat << END                                                  >> $NGX_MAKEFILE

$NGX_OBJS/ngx_chat_lua.h:	$ngx_chat_lua_files $ngx_chat_lua_dir/lua2c.sh
	sh $ngx_chat_lua_dir/lua2c.sh $ngx_chat_lua_files > \$@.tmp
	mv \$@.tmp \$@

END
