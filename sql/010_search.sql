-- 010_search.sql: full-text search of messages (GET /search, PROTOCOL.md
-- section 11). The search column is computed by PostgreSQL from what
-- chat-persist writes: on its INSERT, and again when one of its change rows
-- edits or deletes the message (009's trigger); changes and deleted
-- messages have none, so they are never found. The 'simple' configuration
-- lower-cases words and does not stem: it works the same in any language.

alter table messages
    add column search tsvector generated always as
        (case when kind = 'message' and deleted_at is null
              then to_tsvector('simple', content) end) stored;

-- one GIN index over the conversation and the words (btree_gin: a trusted
-- extension, the database's owner may create it): a search finds the
-- matches of the caller's conversations in it directly, whether the word
-- is rare (few matches anywhere) or common (many elsewhere, few here);
-- the words alone would make a common word read all of its matches
create extension if not exists btree_gin;

create index messages_search_idx on messages
    using gin (conversation_id, search);


-- 001's chat_ensure_partitions again, for a messages table with a
-- generated column: a new partition has it generated too (attach requires
-- it), and rows moved out of the default partition are copied without it
-- (PostgreSQL computes it). Otherwise unchanged.
create or replace function chat_ensure_partitions(months_ahead int)
returns void
language plpgsql
as $$
declare
    first   timestamp := date_trunc('month', now() at time zone 'UTC');
    lo      timestamptz;
    hi      timestamptz;
    part    text;
    cols    text;
    i       int;
begin
    select string_agg(quote_ident(a.attname), ', ' order by a.attnum)
    into cols
    from pg_attribute a
    where a.attrelid = 'messages'::regclass and a.attnum > 0
      and not a.attisdropped and a.attgenerated = '';

    for i in 0 .. greatest(months_ahead, 0) loop
        lo := (first + make_interval(months => i)) at time zone 'UTC';
        hi := (first + make_interval(months => i + 1)) at time zone 'UTC';
        part := 'messages_' || to_char(lo at time zone 'UTC', 'YYYY_MM');

        continue when to_regclass(part) is not null;

        execute format('create table %I (like messages including defaults'
                       ' including constraints including generated)', part);

        execute format('with moved as (delete from messages_default'
                       ' where created_at >= $1 and created_at < $2'
                       ' returning *) insert into %I (%s) select %s'
                       ' from moved', part, cols, cols)
            using lo, hi;

        execute format('alter table messages attach partition %I'
                       ' for values from (%L) to (%L)', part, lo, hi);
    end loop;
end;
$$;


-- GET /search?q=&conversationId=&limit=&offset=: the caller's messages
-- (of one conversation, or of all the caller's) matching q (web search
-- syntax: words, "a phrase", -not, or), best match first, then newest.
-- 200 body: {"results":[message...], "hasMore"}; 403/404 for a
-- conversation the caller is not a member of / that does not exist.
create function chat_api_search(caller text, caller_name text, q text,
    cid text, lim int, off int)
returns table (status int, body text)
language plpgsql
as $$
declare
    rc     int;
    query  tsquery;
    res    json;
    n      int;
begin
    perform chat_touch_user(caller, caller_name);

    if cid is not null then
        rc := chat_check_member(cid, caller);

        if rc <> 200 then
            return query select rc, chat_conversation_error(rc);
            return;
        end if;
    end if;

    query := websearch_to_tsquery('simple', q);

    select coalesce(json_agg(chat_message_json(s.x) order by s.rank desc,
                             (s.x).created_at desc), '[]'), count(*)
    into res, n
    from (select x, ts_rank(x.search, query) as rank
          from messages x
          where x.search @@ query
            and x.conversation_id in (
                select cm.conversation_id from conversation_members cm
                where cm.user_id = caller
                  and (cid is null or cm.conversation_id = cid))
          order by ts_rank(x.search, query) desc, x.created_at desc
          limit lim + 1 offset off) s;

    if n > lim then
        -- the extra row only said that there are more
        select json_agg(e) into res
        from (select e from json_array_elements(res) with ordinality
                  as t(e, i)
              where i <= lim) s;
    end if;

    return query select 200,
        json_build_object('results', res, 'hasMore', n > lim)::text;
end;
$$;
