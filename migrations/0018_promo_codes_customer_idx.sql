-- A customer's promo codes, newest first: the promo_code merge tag reads them for every batch whose
-- template uses it, and GraphQL's customer codes; both scanned the whole table before.
CREATE INDEX "promo_codes_customer_idx" ON "promo_codes" USING btree ("workspace_id","customer_id","issued_at") WHERE "promo_codes"."customer_id" is not null;
