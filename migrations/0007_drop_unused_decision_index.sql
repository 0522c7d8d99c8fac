-- flow_decisions are read by customer (the timeline) and by flow (stats, deletes): the index by entry was
-- never used, and cost a fourth index write for each of the six or so decisions per customer.
DROP INDEX IF EXISTS "flow_decisions_entry_idx";