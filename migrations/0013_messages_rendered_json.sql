-- messages.rendered, the content as sent, becomes json: stored as written after one validation
-- pass. As jsonb each email's content was parsed into a tree on its way in (26 against 11 µs for
-- a 6 KB email, and an insert with compression and TOAST 43 against 21 µs, measured on this
-- machine), the largest part of the send ledger's work per email; nothing queries inside it.
-- Existing rows are rewritten (jsonb's text form); lz4 is set again where the server has it.
ALTER TABLE "messages" ALTER COLUMN "rendered" SET DATA TYPE json USING "rendered"::json;--> statement-breakpoint
DO $$
BEGIN
  ALTER TABLE messages ALTER COLUMN rendered SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
  RAISE NOTICE 'lz4 is not built into this server: messages.rendered keeps pglz';
END $$;
