CREATE INDEX "customer_actions_message_idx" ON "customer_actions" USING btree ("workspace_id","message_id");--> statement-breakpoint
-- "Sent X but not opened within 3 days" and the like read (template, time) ranges and need the
-- customer and message of each row: with them included, the scan never visits the table.
DROP INDEX IF EXISTS "customer_actions_template_idx";--> statement-breakpoint
CREATE INDEX "customer_actions_template_idx" ON "customer_actions" USING btree ("workspace_id","action_template_id","occurred_at") INCLUDE ("customer_id","message_id");
