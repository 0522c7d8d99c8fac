-- An action template is assigned once per message: the unique key now starts with the message,
-- so it also finds a message's actions (a customer's cascade, an action's tracking report) and the
-- index kept for that alone goes: one index less to write on every assignment (webhook batches,
-- sends). Lookups by (template, message) are the same point lookups in the new order.
DROP INDEX "customer_actions_message_idx";--> statement-breakpoint
DROP INDEX "customer_actions_once_idx";--> statement-breakpoint
CREATE UNIQUE INDEX "customer_actions_once_idx" ON "customer_actions" USING btree ("workspace_id","message_id","action_template_id");