-- 008_group_limits.sql: chat_max_group_members on creation and on every
-- add, and an add that answers what changed instead of the whole member
-- list (README.md, "Limits"; PROTOCOL.md section 7).
--
-- These functions return one more column than the others of the API,
-- "limited": the name of the limit that refused the call (null when none
-- did), which the gateway counts in ngx_chat_limited_total{limit}. The
-- older signatures stay for gateways of the previous version.


-- POST /conversations with the cap: a group has at most max_members
-- members, the caller included (0: no cap)
create function chat_api_create_conversation(caller text, caller_name text,
    ctype text, cname text, members text[], max_members int)
returns table (status int, body text, conversation_id text, event text,
               notify text, limited text)
language plpgsql
as $$
declare
    n  int;
begin
    select count(distinct m) into n
    from unnest(members) m
    where m is not null and m <> caller;

    if ctype = 'group' and max_members > 0 and n + 1 > max_members then
        perform chat_touch_user(caller, caller_name);

        return query select 400, chat_error('bad_request',
            format('too many members: a group has at most %s'
                   ' (chat_max_group_members)', max_members)),
            null::text, null::text, null::text, 'group_members'::text;
        return;
    end if;

    return query
    select x.status, x.body, x.conversation_id, x.event, x.notify,
           null::text
    from chat_api_create_conversation(caller, caller_name, ctype, cname,
                                      members) x;
end;
$$;


-- POST /conversations/{id}/members with the cap; the answer is the
-- conversation without "members" and "pending" (they grow with the
-- group) but with
-- "added" (the userIds this call added: [] when it was a member already)
-- and "memberCount". The add itself is 007's chat_api_add_member (a
-- request unless a contact, none across a block).
create function chat_api_add_member(caller text, caller_name text,
    cid text, uid text, max_members int)
returns table (status int, body text, conversation_id text, event text,
               notify text, limited text)
language plpgsql
as $$
declare
    ctype  text;
    n      int;
    r      record;
begin
    -- serializes membership changes of one conversation: the count below
    -- holds until COMMIT
    select c.type into ctype from conversations c where c.id = cid for update;

    if ctype = 'group' and max_members > 0
       and chat_check_member(cid, caller) = 200
       and not exists (select 1 from conversation_members cm
                       where cm.conversation_id = cid and cm.user_id = uid)
    then
        select count(*) into n
        from conversation_members cm where cm.conversation_id = cid;

        if n >= max_members then
            perform chat_touch_user(caller, caller_name);

            return query select 409, chat_error('conflict',
                format('the group is full: it has %s members, at most %s'
                       ' (chat_max_group_members)', n, max_members)),
                null::text, null::text, null::text, 'group_members'::text;
            return;
        end if;
    end if;

    select * into r from chat_api_add_member(caller, caller_name, cid, uid);

    if r.status = 200 then
        select count(*) into n
        from conversation_members cm where cm.conversation_id = cid;

        -- "members" and "pending" (007) grow with the group: GET has them
        r.body := ((r.body::jsonb - 'members' - 'pending')
                   || jsonb_build_object(
                          'added', case when r.conversation_id is not null
                                        then jsonb_build_array(uid)
                                        else '[]'::jsonb end,
                          'memberCount', n))::text;
    end if;

    return query select r.status, r.body, r.conversation_id, r.event,
        r.notify, null::text;
end;
$$;
