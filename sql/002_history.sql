-- 002_history.sql: the history call of the REST API (PROTOCOL.md section 7)
-- and messages written as the live path writes them.
--
-- The gateway merges these rows with the Redis buffer of recent messages
-- (chat:h:<conversationId>), so a message is served before the persistence
-- worker has written it.


-- a message as PROTOCOL.md section 5 writes it; clientMsgId is left out
-- when the sender gave none, as in the live MESSAGE frames
create or replace function chat_message_json(m messages)
returns json
language sql
stable
as $$
    select case when m.client_msg_id is null then
        json_build_object(
            'type', 'message',
            'messageId', m.id::text,
            'conversationId', m.conversation_id,
            'seq', m.seq,
            'senderId', m.sender_id,
            'content', m.content,
            'metadata', m.metadata,
            'createdAt', chat_ts(m.created_at))
    else
        json_build_object(
            'type', 'message',
            'messageId', m.id::text,
            'conversationId', m.conversation_id,
            'seq', m.seq,
            'senderId', m.sender_id,
            'content', m.content,
            'clientMsgId', m.client_msg_id,
            'metadata', m.metadata,
            'createdAt', chat_ts(m.created_at))
    end
$$;


-- GET /conversations/{id}/messages: at most lim + 1 persisted messages
-- (lim + 1 tells the gateway whether there are more):
--   p_after set:   the lowest above p_after, in increasing seq
--   otherwise:     the highest below p_before (or the latest), in
--                  decreasing seq
-- 200 body: {"messages":[...], "members":[[userId, delivered, read], ...]}
-- (the watermarks the gateway computes each message's status from);
-- otherwise the error body (403, 404).
create function chat_api_history(caller text, caller_name text, cid text,
    p_before bigint, p_after bigint, lim int)
returns table (status int, body text)
language plpgsql
as $$
declare
    rc    int;
    msgs  json;
    mem   json;
begin
    perform chat_touch_user(caller, caller_name);

    rc := chat_check_member(cid, caller);

    if rc <> 200 then
        return query select rc, chat_conversation_error(rc);
        return;
    end if;

    if p_after is not null then
        select coalesce(json_agg(chat_message_json(s.x) order by (s.x).seq),
                        '[]')
        into msgs
        from (select x from messages x
              where x.conversation_id = cid and x.seq > p_after
              order by x.seq
              limit lim + 1) s;

    else
        select coalesce(json_agg(chat_message_json(s.x)
                                 order by (s.x).seq desc), '[]')
        into msgs
        from (select x from messages x
              where x.conversation_id = cid
                and (p_before is null or x.seq < p_before)
              order by x.seq desc
              limit lim + 1) s;
    end if;

    select coalesce(json_agg(json_build_array(cm.user_id,
                                              cm.last_delivered_seq,
                                              cm.last_read_seq)), '[]')
    into mem
    from conversation_members cm
    where cm.conversation_id = cid;

    return query select 200,
        json_build_object('messages', msgs, 'members', mem)::text;
end;
$$;


-- GET /conversations: as in 001, and each conversation carries its
-- "activityAt" (the newest message time, else the creation time) for the
-- gateway, which orders the list again once it has merged the messages
-- not yet persisted, and removes the field
create or replace function chat_api_list_conversations(caller text,
    caller_name text)
returns table (status int, body text, conversation_id text, event text,
               notify text)
language plpgsql
as $$
begin
    perform chat_touch_user(caller, caller_name);

    return query
    select 200, json_build_object('conversations', coalesce(json_agg(
                    (left(chat_conversation_json(c.id, caller)::text, -1)
                     || ',"activityAt":'
                     || to_json(chat_ts(coalesce(c.last_message_at,
                                                 c.created_at)))::text
                     || '}')::json
                    order by coalesce(c.last_message_at, c.created_at) desc,
                             c.id desc), '[]'))::text,
           null::text, null::text, null::text
    from conversation_members me
    join conversations c on c.id = me.conversation_id
    where me.user_id = caller;
end;
$$;
