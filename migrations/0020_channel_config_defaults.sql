-- A channel's default config: what an action, a flow's send step or a test send that names no
-- config uses. At most one live default per workspace and channel. Each channel's oldest live
-- config becomes its default (nothing named "no config" before, so nothing changes for existing
-- actions and flows: they name theirs).
ALTER TABLE "channel_configs" ADD COLUMN "is_default" boolean DEFAULT false NOT NULL;--> statement-breakpoint
UPDATE "channel_configs" c SET "is_default" = true
FROM (
  SELECT DISTINCT ON ("workspace_id", "channel") "workspace_id", "id" FROM "channel_configs"
  WHERE "deleted_at" IS NULL ORDER BY "workspace_id", "channel", "created_at", "id"
) oldest
WHERE c."workspace_id" = oldest."workspace_id" AND c."id" = oldest."id";--> statement-breakpoint
CREATE UNIQUE INDEX "channel_configs_default_idx" ON "channel_configs" USING btree ("workspace_id","channel") WHERE "channel_configs"."is_default" and "channel_configs"."deleted_at" is null;
