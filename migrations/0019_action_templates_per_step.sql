-- Action templates per send step of a flow (the seed: once a message is created, its action templates
-- are generated): a flow with an email and an SMS step had one set, of the first channel.
DROP INDEX "action_templates_kind_idx";--> statement-breakpoint
ALTER TABLE "action_templates" ADD COLUMN "step_id" text DEFAULT '' NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "action_templates_kind_idx" ON "action_templates" USING btree ("workspace_id","source_type","source_id","step_id","kind");--> statement-breakpoint
-- Each send step of a launched flow gets its own action templates (its channel's set), as each
-- message of a flow has its own in the seed; they were one set per flow, of the first channel.
INSERT INTO "action_templates" ("workspace_id", "id", "source_type", "source_id", "step_id", "kind", "channel")
SELECT f.workspace_id, gen_random_uuid(), 'flow', f.id::text, (n.node->>'id') || '/' || (s.ord - 1), k.kind, s.step->>'channel'
FROM flows f
JOIN flow_versions v ON v.workspace_id = f.workspace_id AND v.flow_id = f.id AND v.version = f.active_version
CROSS JOIN LATERAL jsonb_array_elements(v.graph->'nodes') AS n(node)
CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN n.node->>'type' = 'steps' THEN n.node->'steps' ELSE '[]'::jsonb END) WITH ORDINALITY AS s(step, ord)
CROSS JOIN LATERAL unnest(CASE s.step->>'channel'
  WHEN 'email' THEN ARRAY['sent', 'delivered', 'opened', 'clicked', 'unsubscribed', 'forwarded', 'bounced', 'complained', 'not_sent', 'failed']
  WHEN 'sms' THEN ARRAY['sent', 'delivered', 'unsubscribed', 'not_sent', 'failed']
  WHEN 'web_push' THEN ARRAY['sent', 'delivered', 'opened', 'clicked', 'not_sent', 'failed']
  WHEN 'mobile_push' THEN ARRAY['sent', 'delivered', 'opened', 'clicked', 'not_sent', 'failed']
  WHEN 'webhook' THEN ARRAY['sent', 'not_sent', 'failed']
  ELSE ARRAY[]::text[] END) AS k(kind)
WHERE s.step->>'type' = 'send'
ON CONFLICT DO NOTHING;--> statement-breakpoint
-- What the flows' messages were assigned moves to their step's templates; flow-wide templates
-- left with nothing are dropped (those of steps no longer in the flow keep theirs).
UPDATE "customer_actions" ca SET "action_template_id" = nat.id
FROM action_templates oat, messages m, action_templates nat
WHERE oat.workspace_id = ca.workspace_id AND oat.id = ca.action_template_id AND oat.source_type = 'flow' AND oat.step_id = ''
  AND m.workspace_id = ca.workspace_id AND m.id = ca.message_id
  AND nat.workspace_id = oat.workspace_id AND nat.source_type = 'flow' AND nat.source_id = oat.source_id AND nat.step_id = m.step_id AND nat.kind = oat.kind;--> statement-breakpoint
DELETE FROM "action_templates" at
WHERE at.source_type = 'flow' AND at.step_id = ''
  AND NOT EXISTS (SELECT FROM customer_actions ca WHERE ca.workspace_id = at.workspace_id AND ca.action_template_id = at.id);
