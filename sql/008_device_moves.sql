-- 008_device_moves.sql: a push token registered by one user while another
-- holds it (PROTOCOL.md section 7, "Push tokens"). It still moves (the
-- app instance FCM gave it to is the one that registers it), but the user
-- it was taken from is told on /user/queue/events, its later DELETE says
-- that the token is no longer its own instead of 204, and the gateway
-- counts it (the "limited" column, as in 008_group_limits.sql).


-- who a token was taken from, and when; the row goes when that user
-- registers the token again (or after 90 days, at the next move of it)
create table device_moves (
    token           text not null,
    from_user       text not null references users on delete cascade,
    moved_at        timestamptz not null default now(),
    primary key (token, from_user)
);


-- POST /devices: registers the token for the caller; one held by another
-- user moves, with an event to that user (notify) and "device_moved"
create function chat_api_claim_device(caller text, caller_name text,
    p_platform text, p_token text)
returns table (status int, body text, conversation_id text, event text,
               notify text, limited text)
language plpgsql
as $$
declare
    d     devices;
    prev  text;
begin
    perform chat_touch_user(caller, caller_name);

    if p_platform is null
       or p_platform not in ('android', 'ios', 'web')
    then
        return query select 400, chat_error('bad_request',
            'platform must be "android", "ios" or "web"'),
            null::text, null::text, null::text, null::text;
        return;
    end if;

    -- the row lock orders two registrations of one token
    select x.user_id into prev from devices x
    where x.token = p_token for update;

    insert into devices as x (token, user_id, platform)
    values (p_token, caller, p_platform)
    on conflict (token) do update
        set user_id = excluded.user_id,
            platform = excluded.platform,
            last_seen = now()
    returning * into d;

    delete from device_moves m
    where m.token = p_token
      and (m.from_user = caller or m.moved_at < now() - interval '90 days');

    if prev is not null and prev <> caller then
        insert into device_moves as m (token, from_user)
        values (p_token, prev)
        on conflict (token, from_user) do update set moved_at = now();
    end if;

    return query select 201, json_build_object(
            'token', d.token,
            'platform', d.platform,
            'userId', d.user_id,
            'createdAt', chat_ts(d.created_at),
            'lastSeen', chat_ts(d.last_seen))::text,
        null::text,
        case when prev is not null and prev <> caller then
            json_build_object('type', 'device.moved',
                              'token', p_token,
                              'at', chat_ts(now()))::text
        end,
        case when prev is not null and prev <> caller then prev end,
        case when prev is not null and prev <> caller then
            'device_moved'::text
        end;
end;
$$;


-- DELETE /devices/{token}: the caller's own token goes (204); one taken
-- by another user since is 409 (the caller's DELETE did nothing); 204
-- also when there is none (a client that logs out twice is not wrong)
create or replace function chat_api_delete_device(caller text,
    caller_name text, p_token text)
returns table (status int, body text, conversation_id text, event text,
               notify text)
language plpgsql
as $$
begin
    perform chat_touch_user(caller, caller_name);

    delete from devices d where d.token = p_token and d.user_id = caller;

    if not found and exists (select 1 from device_moves m
                             where m.token = p_token
                               and m.from_user = caller)
    then
        return query select 409, chat_error('conflict',
            'this push token is no longer yours: another user registered'
            ' it since, and it was not deleted'),
            null::text, null::text, null::text;
        return;
    end if;

    return query select 204, null::text, null::text, null::text,
        null::text;
end;
$$;
