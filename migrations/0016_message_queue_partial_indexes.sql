-- The queue's due index splits in two partial indexes: rows waiting for a claim (claims and the
-- next retry's wake-up read it) and calls under way by the end of their mark (the sweep of
-- abandoned calls reads it). The sweep, at the start of every send job, walked every due row of
-- a backlog to find the few marked 'sending' (300,000 queued rows: a scan of all of them). Every
-- row version is in exactly one of the two, so writes cost what they did.
DROP INDEX "message_queue_due_idx";--> statement-breakpoint
CREATE INDEX "message_queue_sending_idx" ON "message_queue" USING btree ("due_at") WHERE "message_queue"."sending";--> statement-breakpoint
CREATE INDEX "message_queue_due_idx" ON "message_queue" USING btree ("due_at") WHERE not "message_queue"."sending";
