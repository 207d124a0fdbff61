-- 005_messages_index.sql: drops the index on messages (conversation_id,
-- seq). The primary key (conversation_id, seq, created_at) serves every
-- look-up by (conversation_id, seq) and every scan in seq order just as
-- well, and each message written paid for both: index inserts were the
-- largest cost of chat-persist's bulk INSERT.

drop index if exists messages_conversation_seq_idx;
