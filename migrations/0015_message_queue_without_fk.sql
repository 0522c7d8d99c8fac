-- message_queue loses its foreign key to messages: its check was half of what the queue rows add
-- to an outbox insert (10,000 emails: 160 ms for the messages alone, 205 with their queue rows
-- and the key, 183 without the key), paid on every flow tick and action run. A queue row is
-- inserted in the statement that inserts its message, or by the send ledger for a message row it
-- has just updated (and holds); the trigger of migration 0012 now also deletes a deleted
-- message's queue row.
ALTER TABLE "message_queue" DROP CONSTRAINT "message_queue_message_fk";--> statement-breakpoint
CREATE OR REPLACE FUNCTION herald_messages_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM customer_actions a USING old_rows o WHERE a.workspace_id = o.workspace_id AND a.message_id = o.id;
  DELETE FROM message_queue q USING old_rows o WHERE q.workspace_id = o.workspace_id AND q.message_id = o.id;
  RETURN NULL;
END $$;
