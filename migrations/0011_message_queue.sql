-- The send workers' queue moves out of the wide messages rows into message_queue (one narrow row
-- per message queued or being sent). With it, no index of messages depends on a column a send or
-- a delivery status changes: the due index (its predicate named status) and the provider id
-- index go, and pages keep a fifth free, so the 'sending' mark, the outcome and every delivery
-- status are HOT updates (no new index entries). Before, each email's three updates and each
-- webhook status change inserted into every index of messages: three quarters of bench:send's
-- writes. SMS status callbacks now carry the message id in their URL (?message=); a receipt for a
-- message sent before this migration, which has none, is counted as for an unknown message.
CREATE TABLE "message_queue" (
	"workspace_id" uuid NOT NULL,
	"message_id" uuid NOT NULL,
	"due_at" timestamp with time zone NOT NULL,
	"sending" boolean DEFAULT false NOT NULL,
	CONSTRAINT "message_queue_workspace_id_message_id_pk" PRIMARY KEY("workspace_id","message_id")
);
--> statement-breakpoint
-- What is queued keeps its due time (a claim's lease included); what is being sent keeps its
-- lease of five minutes from its mark (SENDING_LEASE_MS), after which its outcome is unknown.
INSERT INTO "message_queue" ("workspace_id", "message_id", "due_at", "sending")
SELECT "workspace_id", "id", CASE WHEN "status" = 'sending' THEN "updated_at" + interval '5 minutes' ELSE "next_attempt_at" END, "status" = 'sending'
FROM "messages" WHERE "status" IN ('queued', 'sending');--> statement-breakpoint
DROP INDEX "messages_due_idx";--> statement-breakpoint
DROP INDEX "messages_provider_idx";--> statement-breakpoint
ALTER TABLE "messages" SET (fillfactor = 80);--> statement-breakpoint
ALTER TABLE "message_queue" ADD CONSTRAINT "message_queue_message_fk" FOREIGN KEY ("workspace_id","message_id") REFERENCES "public"."messages"("workspace_id","id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "message_queue_due_idx" ON "message_queue" USING btree ("due_at");
