-- 003_devices.sql: the push-token calls of the REST API (PROTOCOL.md
-- section 7, /devices) on the devices table of 001; the push worker reads
-- the same table and deletes the tokens FCM reports as unregistered.


-- POST /devices: a token belongs to one user; registering it again (by
-- anyone) moves it to the caller and the new platform, and marks it seen
create function chat_api_register_device(caller text, caller_name text,
    p_platform text, p_token text)
returns table (status int, body text, conversation_id text, event text,
               notify text)
language plpgsql
as $$
declare
    d  devices;
begin
    perform chat_touch_user(caller, caller_name);

    if p_platform is null
       or p_platform not in ('android', 'ios', 'web')
    then
        return query select 400, chat_error('bad_request',
            'platform must be "android", "ios" or "web"'),
            null::text, null::text, null::text;
        return;
    end if;

    insert into devices as x (token, user_id, platform)
    values (p_token, caller, p_platform)
    on conflict (token) do update
        set user_id = excluded.user_id,
            platform = excluded.platform,
            last_seen = now()
    returning * into d;

    return query select 201, json_build_object(
            'token', d.token,
            'platform', d.platform,
            'userId', d.user_id,
            'createdAt', chat_ts(d.created_at),
            'lastSeen', chat_ts(d.last_seen))::text,
        null::text, null::text, null::text;
end;
$$;


-- DELETE /devices/{token}: only the caller's own token; 204 also when
-- there is none (a client that logs out twice is not wrong)
create function chat_api_delete_device(caller text, caller_name text,
    p_token text)
returns table (status int, body text, conversation_id text, event text,
               notify text)
language plpgsql
as $$
begin
    perform chat_touch_user(caller, caller_name);

    delete from devices d where d.token = p_token and d.user_id = caller;

    return query select 204, null::text, null::text, null::text,
        null::text;
end;
$$;
