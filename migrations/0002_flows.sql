CREATE TABLE "flow_customers" (
	"workspace_id" uuid NOT NULL,
	"flow_id" uuid NOT NULL,
	"customer_id" uuid NOT NULL,
	"entries" integer DEFAULT 0 NOT NULL,
	"active_entry_id" uuid,
	"last_entered_at" timestamp with time zone,
	"last_launch_at" timestamp with time zone,
	"once_done" boolean DEFAULT false NOT NULL,
	CONSTRAINT "flow_customers_workspace_id_flow_id_customer_id_pk" PRIMARY KEY("workspace_id","flow_id","customer_id")
);
--> statement-breakpoint
CREATE TABLE "flow_decisions" (
	"workspace_id" uuid NOT NULL,
	"id" uuid NOT NULL,
	"flow_id" uuid NOT NULL,
	"version" integer NOT NULL,
	"entry_id" uuid NOT NULL,
	"customer_id" uuid NOT NULL,
	"node_id" text NOT NULL,
	"node_type" text NOT NULL,
	"branch" text,
	"reason" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"at" timestamp with time zone NOT NULL,
	CONSTRAINT "flow_decisions_workspace_id_id_pk" PRIMARY KEY("workspace_id","id")
);
--> statement-breakpoint
CREATE TABLE "flow_entries" (
	"workspace_id" uuid NOT NULL,
	"id" uuid NOT NULL,
	"flow_id" uuid NOT NULL,
	"customer_id" uuid NOT NULL,
	"version" integer NOT NULL,
	"node_id" text NOT NULL,
	"state" text NOT NULL,
	"wake_at" timestamp with time zone NOT NULL,
	"waiting_for" text,
	"context" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"entered_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	"exited_at" timestamp with time zone,
	"exit_reason" text,
	CONSTRAINT "flow_entries_workspace_id_id_pk" PRIMARY KEY("workspace_id","id")
);
--> statement-breakpoint
CREATE TABLE "flow_limits" (
	"workspace_id" uuid NOT NULL,
	"flow_id" uuid NOT NULL,
	"node_id" text NOT NULL,
	"period" text NOT NULL,
	"used" double precision DEFAULT 0 NOT NULL,
	CONSTRAINT "flow_limits_workspace_id_flow_id_node_id_period_pk" PRIMARY KEY("workspace_id","flow_id","node_id","period")
);
--> statement-breakpoint
CREATE TABLE "flow_versions" (
	"workspace_id" uuid NOT NULL,
	"flow_id" uuid NOT NULL,
	"version" integer NOT NULL,
	"graph" jsonb NOT NULL,
	"settings" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"problems" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"drafted_at" timestamp with time zone NOT NULL,
	"launched_at" timestamp with time zone,
	"stopped_at" timestamp with time zone,
	"discarded_at" timestamp with time zone,
	CONSTRAINT "flow_versions_workspace_id_flow_id_version_pk" PRIMARY KEY("workspace_id","flow_id","version")
);
--> statement-breakpoint
CREATE TABLE "flows" (
	"workspace_id" uuid NOT NULL,
	"id" uuid NOT NULL,
	"name" text NOT NULL,
	"status" text NOT NULL,
	"active_version" integer,
	"draft_version" integer,
	"next_schedule_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"deleted_at" timestamp with time zone,
	CONSTRAINT "flows_workspace_id_id_pk" PRIMARY KEY("workspace_id","id")
);
--> statement-breakpoint
CREATE TABLE "points_ledger" (
	"workspace_id" uuid NOT NULL,
	"id" uuid NOT NULL,
	"customer_id" uuid NOT NULL,
	"delta" bigint NOT NULL,
	"balance" bigint NOT NULL,
	"source_type" text NOT NULL,
	"source_id" text NOT NULL,
	"step_key" text NOT NULL,
	"reason" text,
	"at" timestamp with time zone NOT NULL,
	CONSTRAINT "points_ledger_workspace_id_id_pk" PRIMARY KEY("workspace_id","id")
);
--> statement-breakpoint
CREATE TABLE "promo_codes" (
	"workspace_id" uuid NOT NULL,
	"pool" text NOT NULL,
	"code" text NOT NULL,
	"customer_id" uuid,
	"issued_at" timestamp with time zone,
	"source_key" text,
	CONSTRAINT "promo_codes_workspace_id_pool_code_pk" PRIMARY KEY("workspace_id","pool","code")
);
--> statement-breakpoint
ALTER TABLE "flows" ADD CONSTRAINT "flows_workspace_id_workspaces_id_fk" FOREIGN KEY ("workspace_id") REFERENCES "public"."workspaces"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "flow_decisions_entry_idx" ON "flow_decisions" USING btree ("workspace_id","entry_id","at");--> statement-breakpoint
CREATE INDEX "flow_decisions_customer_idx" ON "flow_decisions" USING btree ("workspace_id","customer_id","at");--> statement-breakpoint
CREATE INDEX "flow_decisions_flow_idx" ON "flow_decisions" USING btree ("workspace_id","flow_id","node_id","branch");--> statement-breakpoint
CREATE INDEX "flow_entries_due_idx" ON "flow_entries" USING btree ("wake_at") WHERE "flow_entries"."state" = 'active';--> statement-breakpoint
CREATE INDEX "flow_entries_flow_idx" ON "flow_entries" USING btree ("workspace_id","flow_id","state","node_id");--> statement-breakpoint
CREATE INDEX "flow_entries_waiting_idx" ON "flow_entries" USING btree ("workspace_id","customer_id","waiting_for") WHERE "flow_entries"."waiting_for" is not null and "flow_entries"."state" in ('active', 'paused');--> statement-breakpoint
CREATE INDEX "flows_schedule_idx" ON "flows" USING btree ("next_schedule_at") WHERE "flows"."status" = 'active' and "flows"."deleted_at" is null;--> statement-breakpoint
CREATE UNIQUE INDEX "points_ledger_once_idx" ON "points_ledger" USING btree ("workspace_id","source_type","source_id","step_key","customer_id");--> statement-breakpoint
CREATE INDEX "points_ledger_customer_idx" ON "points_ledger" USING btree ("workspace_id","customer_id","at");--> statement-breakpoint
CREATE INDEX "promo_codes_free_idx" ON "promo_codes" USING btree ("workspace_id","pool") WHERE "promo_codes"."customer_id" is null;--> statement-breakpoint
CREATE UNIQUE INDEX "promo_codes_once_idx" ON "promo_codes" USING btree ("workspace_id","source_key") WHERE "promo_codes"."source_key" is not null;