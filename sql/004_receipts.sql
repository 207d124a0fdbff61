-- 004_receipts.sql: the times of the members' delivered and read
-- watermarks, which chat-persist records with the watermarks (receipts of
-- chat.receipts) and gives a message of a direct conversation that is
-- stored after a watermark already covered it.


alter table conversation_members
    add column last_delivered_at timestamptz,
    add column last_read_at timestamptz;
