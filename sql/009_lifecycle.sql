-- 009_lifecycle.sql: replies, edits, deletes and reactions (PROTOCOL.md
-- section 10). A change is a row of messages like any message (its own seq,
-- written by chat-persist with the rest), kind naming what it does and
-- target_seq the message it changes; a trigger applies it to the target
-- when the row is inserted. chat-persist inserts a (conversation_id, seq)
-- once, so each change is applied once.


alter table messages
    add column kind         text not null default 'message'
                            check (kind in ('message', 'message.edited',
                                            'message.deleted',
                                            'reaction.added',
                                            'reaction.removed')),
    add column target_seq   bigint,            -- a change: its message
    add column reply_to     bigint,            -- a message: what it answers
    add column edited_at    timestamptz,
    add column edit_seq     bigint,            -- the seq of the last edit
    add column deleted_at   timestamptz;


-- who reacted with what: one row per message, user and emoji
create table message_reactions (
    conversation_id text not null,
    seq             bigint not null,
    user_id         text not null,
    emoji           text not null,
    added_seq       bigint not null,           -- the reaction.added event
    primary key (conversation_id, seq, user_id, emoji)
);


-- applies a change row to its target. The rows of one INSERT are all in
-- before the first AFTER trigger fires, in seq order: a delete wipes the
-- edits of its batch too. An edit never overwrites a later one, and
-- nothing changes a deleted message (the gateway refuses that already;
-- this is the second line).
create function chat_apply_change()
returns trigger
language plpgsql
as $$
begin
    if new.kind = 'message.edited' then
        update messages
        set content = new.content, edited_at = new.created_at,
            edit_seq = new.seq
        where conversation_id = new.conversation_id
          and seq = new.target_seq and kind = 'message'
          and deleted_at is null and coalesce(edit_seq, 0) < new.seq;

    elsif new.kind = 'message.deleted' then
        update messages
        set content = '', metadata = '{}', deleted_at = new.created_at
        where conversation_id = new.conversation_id
          and seq = new.target_seq and kind = 'message'
          and deleted_at is null;

        -- the old contents live in the edits too
        update messages
        set content = ''
        where conversation_id = new.conversation_id
          and kind = 'message.edited' and target_seq = new.target_seq
          and content <> '';

        delete from message_reactions
        where conversation_id = new.conversation_id
          and seq = new.target_seq;

    elsif new.kind = 'reaction.added' then
        insert into message_reactions (conversation_id, seq, user_id, emoji,
                                       added_seq)
        select new.conversation_id, new.target_seq, new.sender_id,
               new.content, new.seq
        where exists (select 1 from messages t
                      where t.conversation_id = new.conversation_id
                        and t.seq = new.target_seq and t.kind = 'message'
                        and t.deleted_at is null)
        on conflict do nothing;

    elsif new.kind = 'reaction.removed' then
        delete from message_reactions
        where conversation_id = new.conversation_id
          and seq = new.target_seq and user_id = new.sender_id
          and emoji = new.content;
    end if;

    return null;
end;
$$;

create trigger messages_apply_change
    after insert on messages
    for each row when (new.kind <> 'message')
    execute function chat_apply_change();


-- a message's reactions, {"<emoji>": [userId, ...]} in the order added;
-- null when there are none
create function chat_reactions_json(cid text, s bigint)
returns json
language sql
stable
as $$
    select json_object_agg(e.emoji, e.users order by e.first)
    from (select r.emoji, json_agg(r.user_id order by r.added_seq) as users,
                 min(r.added_seq) as first
          from message_reactions r
          where r.conversation_id = cid and r.seq = s
          group by r.emoji) e
$$;


-- a message or a change as PROTOCOL.md sections 5 and 9 write it: a plain
-- message (no reply, never edited or deleted, no reactions) exactly as
-- before; the others with their extra fields
create or replace function chat_message_json(m messages)
returns json
language sql
stable
as $$
    select case
    when m.kind = 'message' and m.reply_to is null and m.edited_at is null
         and m.deleted_at is null
         and not exists (select 1 from message_reactions r
                         where r.conversation_id = m.conversation_id
                           and r.seq = m.seq) then
        case when m.client_msg_id is null then
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
    when m.kind = 'message' then
        (json_strip_nulls(json_build_object(
            'type', 'message',
            'messageId', m.id::text,
            'conversationId', m.conversation_id,
            'seq', m.seq,
            'senderId', m.sender_id,
            'content', m.content,
            'clientMsgId', m.client_msg_id,
            'replyTo', m.reply_to,
            'editedAt', case when m.deleted_at is null
                             then chat_ts(m.edited_at) end,
            'deleted', case when m.deleted_at is not null then true end,
            'deletedAt', chat_ts(m.deleted_at),
            'reactions', chat_reactions_json(m.conversation_id, m.seq),
            'createdAt', chat_ts(m.created_at)))::jsonb
        || jsonb_build_object('metadata', m.metadata))::json
    else
        json_strip_nulls(json_build_object(
            'type', m.kind,
            'messageId', m.id::text,
            'conversationId', m.conversation_id,
            'seq', m.seq,
            'senderId', m.sender_id,
            'target', m.target_seq,
            'content', case when m.kind = 'message.edited'
                            then m.content end,
            'emoji', case when m.kind like 'reaction.%' then m.content end,
            'createdAt', chat_ts(m.created_at)))
    end
$$;
