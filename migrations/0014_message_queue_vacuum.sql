-- message_queue churns: each message inserts a row, moves it twice (the claim's lease, the
-- 'sending' mark) and deletes it, each step leaving a dead row version and dead index entries
-- (about three dead versions per message: 12,000 a second at 4,000 emails a second). With the
-- default thresholds (20% of the table) autovacuum would come after a burst, not during it, and
-- throttled; claims would walk ever more dead entries. Vacuumed after every 10,000 dead rows,
-- without cost delays, and analyzed as often (the claim's plan goes by the due index). The send
-- workers also vacuum it themselves when autovacuum is off or lags (queue-maintenance.ts).
ALTER TABLE "message_queue" SET (
  autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000, autovacuum_vacuum_cost_delay = 0,
  autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000,
  autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 10000
);
