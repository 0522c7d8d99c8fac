-- customer_actions loses its foreign key to messages: the check ran once per inserted row (21 ms
-- of a 5,000-event webhook batch's 206 ms, auto_explain). Nothing can insert an action for a
-- message that is gone: the send ledger inserts them for the message rows it has just updated,
-- a webhook batch for the events it has just stored (whose own foreign key holds their message),
-- assignActions joins messages. The cascade it gave is a statement trigger: a deleted message
-- (a customer's deletion cascades to its messages) takes its actions with it.
ALTER TABLE "customer_actions" DROP CONSTRAINT "customer_actions_message_fk";--> statement-breakpoint
CREATE OR REPLACE FUNCTION herald_messages_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM customer_actions a USING old_rows o WHERE a.workspace_id = o.workspace_id AND a.message_id = o.id;
  RETURN NULL;
END $$;--> statement-breakpoint
CREATE TRIGGER messages_deleted AFTER DELETE ON messages REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION herald_messages_deleted();
