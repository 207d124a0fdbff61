-- 001_schema.sql: users, conversations, members, monthly-partitioned
-- messages, devices, and the functions behind the conversation REST API.
--
-- Every REST call is one round trip: "select * from chat_api_...(...)".
-- Each chat_api_* function returns one row:
--   status           the HTTP status to answer
--   body             the JSON body (null for 204)
--   conversation_id  set when the membership of a conversation changed
--   event            the /user/queue/events body to publish (or null)
--   notify           the userIds to publish it to, separated by spaces
-- and creates the caller's user row on first sight.


create table users (
    id              text primary key,
    display_name    text,
    avatar_url      text,
    created_at      timestamptz not null default now(),
    last_seen       timestamptz
);


create table conversations (
    id              text primary key
                    default 'c_' || replace(gen_random_uuid()::text, '-', ''),
    type            text not null check (type in ('direct', 'group')),
    name            text,
    created_by      text references users,
    -- direct: least(a,b) || chr(31) || greatest(a,b); null for groups
    direct_key      text unique,
    created_at      timestamptz not null default now(),
    last_seq        bigint not null default 0,
    last_message_at timestamptz,
    check ((type = 'direct') = (direct_key is not null))
);

create index conversations_activity_idx
    on conversations ((coalesce(last_message_at, created_at)));


create table conversation_members (
    conversation_id     text not null
                        references conversations on delete cascade,
    user_id             text not null references users,
    role                text not null default 'member',
    joined_at           timestamptz not null default now(),
    last_delivered_seq  bigint not null default 0,
    last_read_seq       bigint not null default 0,
    primary key (conversation_id, user_id)
);

create index conversation_members_user_idx
    on conversation_members (user_id);


create table messages (
    id              bigint not null,
    conversation_id text not null,
    seq             bigint not null,
    sender_id       text not null,
    content         text not null,
    client_msg_id   text,
    metadata        jsonb not null default '{}',
    created_at      timestamptz not null,
    status          text not null default 'sent',
    delivered_at    timestamptz,
    read_at         timestamptz,
    primary key (conversation_id, seq, created_at)
) partition by range (created_at);

create index messages_conversation_seq_idx on messages (conversation_id, seq);

create table messages_default partition of messages default;


create table devices (
    token           text primary key,
    user_id         text not null references users on delete cascade,
    platform        text not null check (platform in ('android', 'ios', 'web')),
    created_at      timestamptz not null default now(),
    last_seen       timestamptz not null default now()
);

create index devices_user_idx on devices (user_id);


-- Creates the monthly partitions of messages (UTC months) from the current
-- month to months_ahead months later; rows of those months already in the
-- default partition are moved. Safe to call any number of times.
create function chat_ensure_partitions(months_ahead int)
returns void
language plpgsql
as $$
declare
    first   timestamp := date_trunc('month', now() at time zone 'UTC');
    lo      timestamptz;
    hi      timestamptz;
    part    text;
    i       int;
begin
    for i in 0 .. greatest(months_ahead, 0) loop
        lo := (first + make_interval(months => i)) at time zone 'UTC';
        hi := (first + make_interval(months => i + 1)) at time zone 'UTC';
        part := 'messages_' || to_char(lo at time zone 'UTC', 'YYYY_MM');

        continue when to_regclass(part) is not null;

        execute format('create table %I (like messages including defaults'
                       ' including constraints)', part);

        execute format('with moved as (delete from messages_default'
                       ' where created_at >= $1 and created_at < $2'
                       ' returning *) insert into %I select * from moved',
                       part)
            using lo, hi;

        execute format('alter table messages attach partition %I'
                       ' for values from (%L) to (%L)', part, lo, hi);
    end loop;
end;
$$;

do $$ begin perform chat_ensure_partitions(1); end $$;


-- RFC 3339 UTC with milliseconds (PROTOCOL.md section 1)
create function chat_ts(t timestamptz)
returns text
language sql
immutable
as $$
    select to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;


-- a message as PROTOCOL.md section 5 writes it
create function chat_message_json(m messages)
returns json
language sql
stable
as $$
    select json_build_object(
        'type', 'message',
        'messageId', m.id::text,
        'conversationId', m.conversation_id,
        'seq', m.seq,
        'senderId', m.sender_id,
        'content', m.content,
        'clientMsgId', m.client_msg_id,
        'metadata', m.metadata,
        'createdAt', chat_ts(m.created_at))
$$;


-- "unknown users are created on first sight"; a name from the token fills
-- a missing display name but never replaces one
create function chat_touch_user(uid text, uname text)
returns void
language sql
as $$
    insert into users as u (id, display_name)
    values (uid, nullif(uname, ''))
    on conflict (id) do update set display_name = excluded.display_name
        where u.display_name is null and excluded.display_name is not null
$$;


create function chat_error(code text, message text)
returns text
language sql
immutable
as $$
    select json_build_object('error',
        json_build_object('code', code, 'message', message))::text
$$;


create function chat_user_json(uid text)
returns json
language sql
stable
as $$
    select json_build_object('userId', u.id,
                             'displayName', u.display_name,
                             'avatarUrl', u.avatar_url)
    from users u where u.id = uid
$$;


-- a conversation as the caller (a member) sees it
create function chat_conversation_json(cid text, caller text)
returns json
language sql
stable
as $$
    select json_build_object(
        'conversationId', c.id,
        'type', c.type,
        'name', c.name,
        'createdBy', c.created_by,
        'createdAt', chat_ts(c.created_at),
        'members', (select coalesce(json_agg(cm.user_id
                                             order by cm.joined_at,
                                                      cm.user_id),
                                    '[]')
                    from conversation_members cm
                    where cm.conversation_id = c.id),
        'lastSeq', c.last_seq,
        'lastReadSeq', coalesce(me.last_read_seq, 0),
        'unread', greatest(c.last_seq - coalesce(me.last_read_seq, 0), 0),
        'lastMessage', (select chat_message_json(m)
                        from messages m
                        where m.conversation_id = c.id
                        order by m.seq desc
                        limit 1))
    from conversations c
    left join conversation_members me
        on me.conversation_id = c.id and me.user_id = caller
    where c.id = cid
$$;


create function chat_member_ids(cid text)
returns text
language sql
stable
as $$
    select string_agg(user_id, ' ' order by user_id)
    from conversation_members where conversation_id = cid
$$;


-- POST /conversations: ctype 'direct' or 'group', members the userIds
-- named in the request (validated by the caller of this function)
create function chat_api_create_conversation(caller text, caller_name text,
    ctype text, cname text, members text[])
returns table (status int, body text, conversation_id text, event text,
               notify text)
language plpgsql
as $$
declare
    others  text[];
    dkey    text;
    cid     text;
begin
    perform chat_touch_user(caller, caller_name);

    select coalesce(array_agg(distinct m order by m), '{}') into others
    from unnest(members) m
    where m is not null and m <> caller;

    if ctype = 'direct' then
        if cardinality(others) <> 1 then
            return query select 400, chat_error('bad_request',
                'a direct conversation has exactly one other member'),
                null::text, null::text, null::text;
            return;
        end if;

        dkey := least(caller, others[1]) || chr(31)
                || greatest(caller, others[1]);

    elsif ctype = 'group' then
        if cname is not null and char_length(cname) > 128 then
            return query select 400, chat_error('bad_request',
                'name is longer than 128 characters'),
                null::text, null::text, null::text;
            return;
        end if;

    else
        return query select 400, chat_error('bad_request',
            'type must be "direct" or "group"'),
            null::text, null::text, null::text;
        return;
    end if;

    insert into users (id)
    select m from unnest(others) m
    on conflict (id) do nothing;

    insert into conversations as c (type, name, created_by, direct_key)
    values (ctype, case when ctype = 'group' then cname end, caller, dkey)
    on conflict (direct_key) do nothing
    returning c.id into cid;

    if cid is null then
        -- the pair already has its direct conversation
        select c.id into cid from conversations c where c.direct_key = dkey;

        return query select 200, chat_conversation_json(cid, caller)::text,
            null::text, null::text, null::text;
        return;
    end if;

    insert into conversation_members (conversation_id, user_id, role)
    select cid, caller, 'owner'
    union all
    select cid, m, 'member' from unnest(others) m;

    return query select 201, chat_conversation_json(cid, caller)::text, cid,
        json_build_object('type', 'conversation.created',
                          'conversationId', cid,
                          'by', caller)::text,
        chat_member_ids(cid);
end;
$$;


-- GET /conversations: the caller's conversations, most recently active first
create function chat_api_list_conversations(caller text, caller_name text)
returns table (status int, body text, conversation_id text, event text,
               notify text)
language plpgsql
as $$
begin
    perform chat_touch_user(caller, caller_name);

    return query
    select 200, json_build_object('conversations', coalesce(json_agg(
                    chat_conversation_json(c.id, caller)
                    order by coalesce(c.last_message_at, c.created_at) desc,
                             c.id desc), '[]'))::text,
           null::text, null::text, null::text
    from conversation_members me
    join conversations c on c.id = me.conversation_id
    where me.user_id = caller;
end;
$$;


-- 404 for an unknown conversation, 403 when the caller is not a member
create function chat_check_member(cid text, caller text)
returns int
language sql
stable
as $$
    select case
        when not exists (select 1 from conversations c where c.id = cid)
            then 404
        when not exists (select 1 from conversation_members cm
                         where cm.conversation_id = cid
                           and cm.user_id = caller)
            then 403
        else 200 end
$$;


create function chat_conversation_error(code int)
returns text
language sql
immutable
as $$
    select case code
        when 404 then chat_error('not_found', 'no such conversation')
        else chat_error('forbidden', 'not a member of this conversation')
    end
$$;


-- GET /conversations/{id}
create function chat_api_get_conversation(caller text, caller_name text,
    cid text)
returns table (status int, body text, conversation_id text, event text,
               notify text)
language plpgsql
as $$
declare
    rc  int;
begin
    perform chat_touch_user(caller, caller_name);

    rc := chat_check_member(cid, caller);

    if rc <> 200 then
        return query select rc, chat_conversation_error(rc),
            null::text, null::text, null::text;
        return;
    end if;

    return query select 200, chat_conversation_json(cid, caller)::text,
        null::text, null::text, null::text;
end;
$$;


-- POST /conversations/{id}/members: groups only, any member may add;
-- adding a member again changes nothing and answers 200
create function chat_api_add_member(caller text, caller_name text,
    cid text, uid text)
returns table (status int, body text, conversation_id text, event text,
               notify text)
language plpgsql
as $$
declare
    ctype  text;
    rc     int;
begin
    perform chat_touch_user(caller, caller_name);

    -- serializes membership changes of one conversation
    select c.type into ctype from conversations c where c.id = cid for update;

    rc := chat_check_member(cid, caller);

    if rc <> 200 then
        return query select rc, chat_conversation_error(rc),
            null::text, null::text, null::text;
        return;
    end if;

    if ctype <> 'group' then
        return query select 409, chat_error('conflict',
            'the members of a direct conversation cannot change'),
            null::text, null::text, null::text;
        return;
    end if;

    insert into users (id) values (uid) on conflict (id) do nothing;

    insert into conversation_members as cm (conversation_id, user_id)
    values (cid, uid)
    on conflict on constraint conversation_members_pkey do nothing;

    if not found then
        return query select 200, chat_conversation_json(cid, caller)::text,
            null::text, null::text, null::text;
        return;
    end if;

    return query select 200, chat_conversation_json(cid, caller)::text, cid,
        json_build_object('type', 'member.added',
                          'conversationId', cid,
                          'userId', uid,
                          'by', caller)::text,
        chat_member_ids(cid);
end;
$$;


-- DELETE /conversations/{id}/members/{userId}: a member may remove itself,
-- the creator may remove anyone; groups only
create function chat_api_remove_member(caller text, caller_name text,
    cid text, uid text)
returns table (status int, body text, conversation_id text, event text,
               notify text)
language plpgsql
as $$
declare
    conv  conversations;
    rc    int;
begin
    perform chat_touch_user(caller, caller_name);

    select * into conv from conversations c where c.id = cid for update;

    rc := chat_check_member(cid, caller);

    if rc <> 200 then
        return query select rc, chat_conversation_error(rc),
            null::text, null::text, null::text;
        return;
    end if;

    if conv.type <> 'group' then
        return query select 409, chat_error('conflict',
            'the members of a direct conversation cannot change'),
            null::text, null::text, null::text;
        return;
    end if;

    if uid <> caller and conv.created_by is distinct from caller then
        return query select 403, chat_error('forbidden',
            'only the creator may remove other members'),
            null::text, null::text, null::text;
        return;
    end if;

    delete from conversation_members cm
    where cm.conversation_id = cid and cm.user_id = uid;

    if not found then
        return query select 404, chat_error('not_found',
            'no such member in this conversation'),
            null::text, null::text, null::text;
        return;
    end if;

    return query select 204, null::text, cid,
        json_build_object('type', 'member.removed',
                          'conversationId', cid,
                          'userId', uid,
                          'by', caller)::text,
        concat_ws(' ', chat_member_ids(cid), uid);
end;
$$;


-- GET /users/{id}
create function chat_api_get_user(caller text, caller_name text, uid text)
returns table (status int, body text, conversation_id text, event text,
               notify text)
language plpgsql
as $$
declare
    profile  json;
begin
    perform chat_touch_user(caller, caller_name);

    profile := chat_user_json(uid);

    if profile is null then
        return query select 404, chat_error('not_found', 'no such user'),
            null::text, null::text, null::text;
        return;
    end if;

    return query select 200, profile::text, null::text, null::text,
        null::text;
end;
$$;


-- PUT /users/me: set_name / set_avatar say whether the field was given
-- (a JSON null clears it)
create function chat_api_put_user(caller text, caller_name text,
    set_name boolean, dname text, set_avatar boolean, avatar text)
returns table (status int, body text, conversation_id text, event text,
               notify text)
language plpgsql
as $$
begin
    perform chat_touch_user(caller, caller_name);

    update users u
    set display_name = case when set_name then dname else u.display_name end,
        avatar_url = case when set_avatar then avatar else u.avatar_url end
    where u.id = caller and (set_name or set_avatar);

    return query select 200, chat_user_json(caller)::text, null::text,
        null::text, null::text;
end;
$$;
