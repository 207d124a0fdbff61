-- 011_attachments.sql: files uploaded to a conversation (PROTOCOL.md
-- section 11). nginx keeps the bytes on disk (chat_attachments); this is
-- who may read them.

create table attachments (
    id              text primary key,
    conversation_id text not null references conversations on delete cascade,
    uploader_id     text not null references users,
    content_type    text not null,
    size            bigint not null,
    created_at      timestamptz not null default now()
);


-- POST /attachments?conversationId=: the file is on disk as aid; 201 and
-- the attachment, or the error (403, 404: the gateway then deletes it)
create function chat_api_attachment_add(caller text, caller_name text,
    aid text, cid text, ctype text, fsize bigint, url text)
returns table (status int, body text)
language plpgsql
as $$
declare
    rc  int;
begin
    perform chat_touch_user(caller, caller_name);

    rc := chat_check_member(cid, caller);

    if rc <> 200 then
        return query select rc, chat_conversation_error(rc);
        return;
    end if;

    insert into attachments (id, conversation_id, uploader_id, content_type,
                             size)
    values (aid, cid, caller, ctype, fsize);

    return query select 201, json_build_object(
        'attachmentId', aid, 'conversationId', cid, 'contentType', ctype,
        'size', fsize, 'url', url)::text;
end;
$$;


-- GET /attachments/{id}: 200 and the content type (the gateway serves the
-- file), or the error: 404 (no such attachment), 403 (not a member of its
-- conversation)
create function chat_api_attachment_get(caller text, caller_name text,
    aid text)
returns table (status int, body text)
language plpgsql
as $$
declare
    a   attachments;
    rc  int;
begin
    perform chat_touch_user(caller, caller_name);

    select * into a from attachments where id = aid;

    if not found then
        return query select 404, chat_error('not_found',
                                            'no such attachment');
        return;
    end if;

    rc := chat_check_member(a.conversation_id, caller);

    if rc <> 200 then
        return query select rc, chat_conversation_error(rc);
        return;
    end if;

    return query select 200, a.content_type;
end;
$$;
