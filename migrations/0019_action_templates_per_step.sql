-- Action templates per send step of a flow and per channel (the seed: once a message is created,
-- its action templates are generated): a flow with an email and an SMS step had one set, of the
-- first channel. The channel is in the key too: a step id can change channel between versions,
-- and an action's channel can be edited.
DROP INDEX "action_templates_kind_idx";--> statement-breakpoint
ALTER TABLE "action_templates" ADD COLUMN "step_id" text DEFAULT '' NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "action_templates_kind_idx" ON "action_templates" USING btree ("workspace_id","source_type","source_id","step_id","channel","kind");--> statement-breakpoint
-- A launched flow's flow-wide set (of whichever channel came first) becomes the set of its
-- first send step of that channel: its ids (saved filters, clients) stay valid.
UPDATE "action_templates" at SET "step_id" = f.step_id
FROM (
  SELECT DISTINCT ON (fl.workspace_id, fl.id, s.step->>'channel') fl.workspace_id, fl.id::text AS source_id, s.step->>'channel' AS channel, (n.node->>'id') || '/' || (s.ord - 1) AS step_id
  FROM flows fl
  JOIN flow_versions v ON v.workspace_id = fl.workspace_id AND v.flow_id = fl.id AND v.version = fl.active_version
  CROSS JOIN LATERAL jsonb_array_elements(v.graph->'nodes') WITH ORDINALITY AS n(node, nord)
  CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN n.node->>'type' = 'steps' THEN n.node->'steps' ELSE '[]'::jsonb END) WITH ORDINALITY AS s(step, ord)
  WHERE s.step->>'type' = 'send'
  ORDER BY fl.workspace_id, fl.id, s.step->>'channel', n.nord, s.ord
) f
WHERE at.workspace_id = f.workspace_id AND at.source_type = 'flow' AND at.source_id = f.source_id AND at.step_id = '' AND at.channel = f.channel;--> statement-breakpoint
-- Every send step of a launched flow gets its channel's set, and so does every (step, channel)
-- a flow's messages were sent from (steps of earlier versions, removed since): their late
-- events still find a template.
INSERT INTO "action_templates" ("workspace_id", "id", "source_type", "source_id", "step_id", "kind", "channel")
SELECT x.workspace_id, gen_random_uuid(), 'flow', x.source_id, x.step_id, k.kind, x.channel
FROM (
  SELECT fl.workspace_id, fl.id::text AS source_id, (n.node->>'id') || '/' || (s.ord - 1) AS step_id, s.step->>'channel' AS channel
  FROM flows fl
  JOIN flow_versions v ON v.workspace_id = fl.workspace_id AND v.flow_id = fl.id AND v.version = fl.active_version
  CROSS JOIN LATERAL jsonb_array_elements(v.graph->'nodes') AS n(node)
  CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN n.node->>'type' = 'steps' THEN n.node->'steps' ELSE '[]'::jsonb END) WITH ORDINALITY AS s(step, ord)
  WHERE s.step->>'type' = 'send'
  UNION
  SELECT DISTINCT workspace_id, source_id, step_id, channel FROM messages WHERE source_type = 'flow'
) x
CROSS JOIN LATERAL unnest(CASE x.channel
  WHEN 'email' THEN ARRAY['sent', 'delivered', 'opened', 'clicked', 'unsubscribed', 'forwarded', 'bounced', 'complained', 'not_sent', 'failed']
  WHEN 'sms' THEN ARRAY['sent', 'delivered', 'unsubscribed', 'not_sent', 'failed']
  WHEN 'web_push' THEN ARRAY['sent', 'delivered', 'opened', 'clicked', 'not_sent', 'failed']
  WHEN 'mobile_push' THEN ARRAY['sent', 'delivered', 'opened', 'clicked', 'not_sent', 'failed']
  WHEN 'webhook' THEN ARRAY['sent', 'not_sent', 'failed']
  ELSE ARRAY[]::text[] END) AS k(kind)
ON CONFLICT DO NOTHING;--> statement-breakpoint
-- What a flow's message was assigned moves to its own step's and channel's template of that kind
-- (the flow-wide set held every step's); nothing is copied, so a timeline shows each action once.
UPDATE "customer_actions" ca SET "action_template_id" = nat.id
FROM action_templates oat, messages m, action_templates nat
WHERE oat.workspace_id = ca.workspace_id AND oat.id = ca.action_template_id AND oat.source_type = 'flow'
  AND m.workspace_id = ca.workspace_id AND m.id = ca.message_id AND (oat.step_id <> m.step_id OR oat.channel <> m.channel)
  AND nat.workspace_id = oat.workspace_id AND nat.source_type = 'flow' AND nat.source_id = oat.source_id
  AND nat.step_id = m.step_id AND nat.channel = m.channel AND nat.kind = oat.kind;
