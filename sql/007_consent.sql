-- 007_consent.sql: conversation requests and blocking (PROTOCOL.md,
-- "Requests and blocking"): presence is visible only where the watched
-- user consented, and a user can block another.
--
-- A member's state is 'accepted' or 'request'. The creator of a
-- conversation has accepted it; a member put in by someone (at creation
-- or by POST .../members) is a request, unless the two already share a
-- conversation both accepted (contacts). A request becomes accepted by
-- POST .../accept, by asking for the same direct conversation, or by the
-- member's first message (stored by chat-persist: the trigger below), its
-- typing or a read in it (the gateway: chat_accept_by_activity).
-- POST .../decline removes the member.
--
-- Presence of W is visible to V (chat_presence_allowed) when V is W, or
-- when no block stands between them and W accepted a conversation V is in
-- where V accepted too or W itself invited V: the one who starts a
-- conversation shows itself to the one it invites, never the reverse.


-- the rows before this migration were all consented to: accepted
alter table conversation_members
    add column state text not null default 'accepted'
        check (state in ('accepted', 'request')),
    add column invited_by text;

alter table conversation_members alter column state set default 'request';


create table blocks (
    blocker     text not null references users on delete cascade,
    blocked     text not null references users on delete cascade,
    created_at  timestamptz not null default now(),
    primary key (blocker, blocked),
    check (blocker <> blocked)
);

create index blocks_blocked_idx on blocks (blocked);


-- a block in either direction
create function chat_blocked_between(a text, b text)
returns boolean
language sql
stable
as $$
    select exists (select 1 from blocks
                   where (blocker = a and blocked = b)
                      or (blocker = b and blocked = a))
$$;


-- a and b share a conversation both accepted
create function chat_contacts(a text, b text)
returns boolean
language sql
stable
as $$
    select exists (select 1 from conversation_members x
                   join conversation_members y using (conversation_id)
                   where x.user_id = a and y.user_id = b
                     and x.state = 'accepted' and y.state = 'accepted')
$$;


-- may watcher see the presence of watched: one row if so. A set-returning
-- SQL function so that the planner inlines it into the gateway's queries
-- and plans it with the two ids (a scalar one with sub-selects is not
-- inlined: its one generic plan scanned all the conversations of a user
-- with thousands, 50 times slower)
create function chat_presence_allowed(watcher text, watched text)
returns table (ok int)
language sql
stable
as $$
    select 1
    where watcher = watched
       or (not exists (select 1 from blocks
                       where (blocker = watcher and blocked = watched)
                          or (blocker = watched and blocked = watcher))
           and exists (select 1 from conversation_members w
                       join conversation_members v using (conversation_id)
                       where w.user_id = watched and v.user_id = watcher
                         and w.state = 'accepted'
                         and (v.state = 'accepted'
                              or v.invited_by = watched)))
$$;


-- the same as a boolean, for SQL by hand
create function chat_presence_visible(watcher text, watched text)
returns boolean
language sql
stable
as $$
    select exists (select 1 from chat_presence_allowed(watcher, watched))
$$;


-- the members of a direct conversation with a block between them: what
-- the gateway's membership cache marks (ngx_chat_messaging.c)
create function chat_conversation_blocked(cid text)
returns boolean
language sql
stable
as $$
    select exists (select 1 from conversations c
                   join conversation_members x on x.conversation_id = c.id
                   join conversation_members y on y.conversation_id = c.id
                   join blocks b on b.blocker = x.user_id
                                and b.blocked = y.user_id
                   where c.id = cid and c.type = 'direct')
$$;


-- the direct conversation of a pair, if any
create function chat_direct_id(a text, b text)
returns text
language sql
stable
as $$
    select c.id from conversations c
    where c.direct_key = least(a, b) || chr(31) || greatest(a, b)
$$;


-- as in 006, with the caller's "request" and the members that have not
-- accepted yet ("pending")
create or replace function chat_conversation_json(cid text, caller text)
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
        'request', coalesce(me.state = 'request', false),
        'invitedBy', case when me.state = 'request' then me.invited_by end,
        'pending', (select coalesce(json_agg(cm.user_id
                                             order by cm.joined_at,
                                                      cm.user_id),
                                    '[]')
                    from conversation_members cm
                    where cm.conversation_id = c.id
                      and cm.state = 'request'),
        'lastSeq', c.last_seq,
        'lastReadSeq', coalesce(me.last_read_seq, 0),
        'unread', greatest(c.last_seq - coalesce(me.last_read_seq, 0)
                           - cardinality(chat_own_unread_seqs(c.id, caller,
                                 c.last_seq, coalesce(me.last_read_seq, 0))),
                           0),
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


-- as in 001, with blocks and requests. A direct conversation asked for
-- again: the caller accepts it (and comes back to it if it declined)
create or replace function chat_api_create_conversation(caller text,
    caller_name text, ctype text, cname text, members text[])
returns table (status int, body text, conversation_id text, event text,
               notify text)
language plpgsql
as $$
declare
    others  text[];
    dkey    text;
    cid     text;
    who     text;
    st      text;
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

    select m into who from unnest(others) m
    where chat_blocked_between(caller, m) order by m limit 1;

    if who is not null then
        return query select 403, chat_error('blocked',
            case when exists (select 1 from blocks b
                              where b.blocker = caller and b.blocked = who)
                then 'you blocked ' || who || ': unblock first'
                else who || ' does not accept conversations from you' end),
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
        select c.id into cid from conversations c where c.direct_key = dkey
        for update;

        select cm.state into st from conversation_members cm
        where cm.conversation_id = cid and cm.user_id = caller;

        if st = 'accepted' then
            return query select 200, chat_conversation_json(cid, caller)::text,
                null::text, null::text, null::text;
            return;
        end if;

        if st is null then
            insert into conversation_members (conversation_id, user_id,
                                              state)
            values (cid, caller, 'accepted');
        else
            update conversation_members cm set state = 'accepted'
            where cm.conversation_id = cid and cm.user_id = caller;
        end if;

        return query select 200, chat_conversation_json(cid, caller)::text,
            cid,
            json_build_object('type', 'member.accepted',
                              'conversationId', cid,
                              'userId', caller,
                              'by', caller)::text,
            chat_member_ids(cid);
        return;
    end if;

    insert into conversation_members (conversation_id, user_id, role, state)
    values (cid, caller, 'owner', 'accepted');

    insert into conversation_members (conversation_id, user_id, role, state,
                                      invited_by)
    select cid, m, 'member',
           case when chat_contacts(caller, m) then 'accepted'
                else 'request' end,
           caller
    from unnest(others) m;

    return query select 201, chat_conversation_json(cid, caller)::text, cid,
        json_build_object('type', 'conversation.created',
                          'conversationId', cid,
                          'by', caller)::text,
        chat_member_ids(cid);
end;
$$;


-- as in 001: the member added is a request unless a contact of the
-- caller; no one is added across a block
create or replace function chat_api_add_member(caller text, caller_name text,
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

    if chat_blocked_between(caller, uid) then
        return query select 403, chat_error('blocked',
            case when exists (select 1 from blocks b
                              where b.blocker = caller and b.blocked = uid)
                then 'you blocked ' || uid || ': unblock first'
                else uid || ' does not accept conversations from you' end),
            null::text, null::text, null::text;
        return;
    end if;

    insert into users (id) values (uid) on conflict (id) do nothing;

    insert into conversation_members as cm (conversation_id, user_id, state,
                                            invited_by)
    values (cid, uid,
            case when chat_contacts(caller, uid) then 'accepted'
                 else 'request' end,
            caller)
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


-- POST /conversations/{id}/accept: 200 and the conversation; accepting
-- again changes nothing
create function chat_api_accept(caller text, caller_name text, cid text)
returns table (status int, body text, conversation_id text, event text,
               notify text)
language plpgsql
as $$
declare
    rc  int;
begin
    perform chat_touch_user(caller, caller_name);

    perform 1 from conversations c where c.id = cid for update;

    rc := chat_check_member(cid, caller);

    if rc <> 200 then
        return query select rc, chat_conversation_error(rc),
            null::text, null::text, null::text;
        return;
    end if;

    update conversation_members cm set state = 'accepted'
    where cm.conversation_id = cid and cm.user_id = caller
      and cm.state = 'request';

    if not found then
        return query select 200, chat_conversation_json(cid, caller)::text,
            null::text, null::text, null::text;
        return;
    end if;

    -- the conversation id publishes the event (and renews the cache)
    return query select 200, chat_conversation_json(cid, caller)::text,
        cid,
        json_build_object('type', 'member.accepted',
                          'conversationId', cid,
                          'userId', caller,
                          'by', caller)::text,
        chat_member_ids(cid);
end;
$$;


-- POST /conversations/{id}/decline: a request only; the caller leaves the
-- conversation (204). Of a direct conversation only the caller's own
-- sessions are told: the other side is not told it was declined
create function chat_api_decline(caller text, caller_name text, cid text)
returns table (status int, body text, conversation_id text, event text,
               notify text)
language plpgsql
as $$
declare
    ctype  text;
    st     text;
    rc     int;
begin
    perform chat_touch_user(caller, caller_name);

    select c.type into ctype from conversations c where c.id = cid for update;

    rc := chat_check_member(cid, caller);

    if rc <> 200 then
        return query select rc, chat_conversation_error(rc),
            null::text, null::text, null::text;
        return;
    end if;

    select cm.state into st from conversation_members cm
    where cm.conversation_id = cid and cm.user_id = caller;

    if st <> 'request' then
        return query select 409, chat_error('conflict',
            'only a request can be declined: this conversation was '
            || 'accepted'),
            null::text, null::text, null::text;
        return;
    end if;

    delete from conversation_members cm
    where cm.conversation_id = cid and cm.user_id = caller;

    return query select 204, null::text, cid,
        json_build_object('type', 'member.removed',
                          'conversationId', cid,
                          'userId', caller,
                          'by', caller)::text,
        case when ctype = 'direct' then caller
             else concat_ws(' ', chat_member_ids(cid), caller) end;
end;
$$;


-- a member's first stored message accepts its request: one UPDATE per
-- INSERT statement (chat-persist writes a batch in one)
create function chat_accept_on_messages()
returns trigger
language plpgsql
as $$
begin
    update conversation_members cm set state = 'accepted'
    from (select distinct n.conversation_id, n.sender_id
          from new_rows n) s
    where cm.conversation_id = s.conversation_id
      and cm.user_id = s.sender_id
      and cm.state = 'request';
    return null;
end;
$$;

create trigger messages_accept_requests
    after insert on messages
    referencing new table as new_rows
    for each statement execute function chat_accept_on_messages();


-- the gateway saw the member type or read in it (ngx_chat_messaging.c)
create function chat_accept_by_activity(cid text, uid text)
returns void
language sql
as $$
    update conversation_members cm set state = 'accepted'
    where cm.conversation_id = cid and cm.user_id = uid
      and cm.state = 'request'
$$;


-- POST /blocks/{userId}: 204; blocking again changes nothing. Besides the
-- chat_api_* row: "cut", the pair whose presence subscriptions end.
-- conversation_id is the pair's direct conversation, whose membership
-- cache then learns of the block.
create function chat_api_block(caller text, caller_name text, uid text)
returns table (status int, body text, conversation_id text, event text,
               notify text, cut text)
language plpgsql
as $$
begin
    perform chat_touch_user(caller, caller_name);

    if uid = caller then
        return query select 400, chat_error('bad_request',
            'a user cannot block itself'),
            null::text, null::text, null::text, null::text;
        return;
    end if;

    insert into users (id) values (uid) on conflict (id) do nothing;

    insert into blocks (blocker, blocked) values (caller, uid)
    on conflict do nothing;

    return query select 204, null::text, chat_direct_id(caller, uid),
        null::text, null::text, caller || ' ' || uid;
end;
$$;


-- DELETE /blocks/{userId}: 204, or 404 when there was no such block
create function chat_api_unblock(caller text, caller_name text, uid text)
returns table (status int, body text, conversation_id text, event text,
               notify text)
language plpgsql
as $$
begin
    perform chat_touch_user(caller, caller_name);

    delete from blocks b where b.blocker = caller and b.blocked = uid;

    if not found then
        return query select 404, chat_error('not_found',
            'this user is not blocked'),
            null::text, null::text, null::text;
        return;
    end if;

    return query select 204, null::text, chat_direct_id(caller, uid),
        null::text, null::text;
end;
$$;


-- GET /blocks: the users the caller blocked, newest first
create function chat_api_list_blocks(caller text, caller_name text)
returns table (status int, body text, conversation_id text, event text,
               notify text)
language plpgsql
as $$
begin
    perform chat_touch_user(caller, caller_name);

    return query
    select 200, json_build_object('blocks', coalesce(json_agg(
                    json_build_object('userId', b.blocked,
                                      'createdAt', chat_ts(b.created_at))
                    order by b.created_at desc, b.blocked), '[]'))::text,
           null::text, null::text, null::text
    from blocks b
    where b.blocker = caller;
end;
$$;
