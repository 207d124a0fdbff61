-- 006_unread_others.sql: "unread" counts only the other members' messages:
-- a user's own messages are never unread, on any device of theirs.
--
-- The caller's own messages above its read watermark are looked for among
-- the newest 1000 seqs of the conversation only, so that a conversation
-- with a huge backlog costs one bounded index range scan; beyond 1000
-- unread, older own messages are still counted as unread.


-- the caller's own persisted seqs above its read watermark, newest first
create function chat_own_unread_seqs(cid text, caller text, last_seq bigint,
    read_seq bigint)
returns bigint[]
language sql
stable
as $$
    select coalesce(array_agg(m.seq order by m.seq desc), '{}')
    from messages m
    where m.conversation_id = cid
      and m.seq > greatest(read_seq, last_seq - 1000)
      and m.sender_id = caller
$$;


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


-- a conversation with the field only the gateway needs: "ownSeqs", which it
-- merges with the caller's messages in the Redis buffer (not persisted yet)
-- to count unread, and removes
create function chat_conversation_gateway_json(cid text, caller text)
returns text
language sql
stable
as $$
    select left(chat_conversation_json(c.id, caller)::text, -1)
           || ',"ownSeqs":'
           || to_json(chat_own_unread_seqs(c.id, caller, c.last_seq,
                                           coalesce(me.last_read_seq, 0)))
              ::text
           || '}'
    from conversations c
    left join conversation_members me
        on me.conversation_id = c.id and me.user_id = caller
    where c.id = cid
$$;


create or replace function chat_api_get_conversation(caller text,
    caller_name text, cid text)
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

    return query select 200, chat_conversation_gateway_json(cid, caller),
        null::text, null::text, null::text;
end;
$$;


-- as in 002, each conversation also with "ownSeqs"
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
                    (left(chat_conversation_gateway_json(c.id, caller), -1)
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
