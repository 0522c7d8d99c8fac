-- Rate-limit counters shared by every Herald process: one row per (limit key, fixed window).
-- Each process counts locally and adds its counts here a few times a second (src/http/rate-limit.ts);
-- the table is unlogged (a crash may forget the current minute's counts, which only loosens the
-- limit for that minute) and old windows are deleted as processes sync.
CREATE UNLOGGED TABLE IF NOT EXISTS rate_limit_hits (
  key text NOT NULL,
  window_start bigint NOT NULL,
  hits integer NOT NULL,
  PRIMARY KEY (key, window_start)
);
