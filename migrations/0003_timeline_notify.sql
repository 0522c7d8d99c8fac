-- Timeline subscriptions across processes: every statement that adds timeline rows (events,
-- messages, action templates assigned, flow decisions) announces their ids on the channel
-- herald_timeline, in chunks that fit NOTIFY's 8000-byte payload. Listeners load what they need.
CREATE OR REPLACE FUNCTION herald_timeline_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  chunk text;
BEGIN
  FOR chunk IN
    SELECT json_agg(json_build_array(workspace_id, customer_id, id))::text
    FROM (SELECT workspace_id, customer_id, id, (row_number() OVER ()) / 60 AS g FROM new_rows) x
    GROUP BY g
  LOOP
    PERFORM pg_notify('herald_timeline', TG_ARGV[0] || ':' || chunk);
  END LOOP;
  RETURN NULL;
END;
$$;--> statement-breakpoint
CREATE TRIGGER events_timeline_notify AFTER INSERT ON events REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION herald_timeline_notify('event');--> statement-breakpoint
CREATE TRIGGER messages_timeline_notify AFTER INSERT ON messages REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION herald_timeline_notify('message');--> statement-breakpoint
CREATE TRIGGER customer_actions_timeline_notify AFTER INSERT ON customer_actions REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION herald_timeline_notify('action');--> statement-breakpoint
CREATE TRIGGER flow_decisions_timeline_notify AFTER INSERT ON flow_decisions REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION herald_timeline_notify('flow');
