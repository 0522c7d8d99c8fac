-- Flow stats kept as the engine decides (flow_node_counts, appended per tick) instead of counted
-- from every decision on each call: GET /v1/flows/{id}/stats read the decisions view, 6.5 s per
-- call for a 1,000,000-customer flow. flow_entries.visited tells a tick which nodes an entry
-- has already been counted at (waits decide on arrival and on leaving; cycles come back).
CREATE TABLE "flow_node_counts" (
	"workspace_id" uuid NOT NULL,
	"id" uuid NOT NULL,
	"flow_id" uuid NOT NULL,
	"node_id" text NOT NULL,
	"branch" text,
	"entered" bigint DEFAULT 0 NOT NULL,
	"decisions" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "flow_node_counts_workspace_id_id_pk" PRIMARY KEY("workspace_id","id")
);
--> statement-breakpoint
ALTER TABLE "flow_entries" ADD COLUMN "visited" text[] DEFAULT '{}'::text[] NOT NULL;--> statement-breakpoint
CREATE INDEX "flow_node_counts_flow_idx" ON "flow_node_counts" USING btree ("workspace_id","flow_id");--> statement-breakpoint
-- The stats counted so far, from the decisions: per node its distinct entries, per node and
-- branch its decisions (the numbers GET /v1/flows/{id}/stats gave when it read the decisions).
INSERT INTO "flow_node_counts" ("workspace_id", "id", "flow_id", "node_id", "branch", "entered", "decisions")
SELECT workspace_id, gen_random_uuid(), flow_id, node_id, NULL, count(DISTINCT entry_id), count(*) FILTER (WHERE branch IS NULL)
FROM flow_decision_list GROUP BY workspace_id, flow_id, node_id;--> statement-breakpoint
INSERT INTO "flow_node_counts" ("workspace_id", "id", "flow_id", "node_id", "branch", "entered", "decisions")
SELECT workspace_id, gen_random_uuid(), flow_id, node_id, branch, 0, count(*)
FROM flow_decision_list WHERE branch IS NOT NULL GROUP BY workspace_id, flow_id, node_id, branch;--> statement-breakpoint
-- The entries still under way learn the nodes they have decisions at (done ones never move again).
UPDATE "flow_entries" e SET "visited" = v.nodes
FROM (
  SELECT d.workspace_id, d.entry_id, array_agg(DISTINCT d.node_id) AS nodes
  FROM flow_decision_list d JOIN flow_entries x ON x.workspace_id = d.workspace_id AND x.id = d.entry_id AND x.state <> 'done'
  GROUP BY d.workspace_id, d.entry_id
) v
WHERE e.workspace_id = v.workspace_id AND e.id = v.entry_id;
