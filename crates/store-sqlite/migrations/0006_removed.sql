-- Migration 6: retention removes events from the log but keeps their place. A removed event's
-- row keeps its key (tenant, seq), its id, its idempotency digest and its leaf hash, so the
-- tree, the hash chain and every proof of the rest stay whole and a retry of it is still a
-- duplicate; its entry, personal values and legacy columns are emptied, and `gone_recorded_at`
-- keeps the one field a retry's answer needs: the entry's 8 bytes of it (an i64, big-endian),
-- or for a row from before entries the number. Rows with an event leave it empty.
ALTER TABLE log ADD COLUMN gone_recorded_at;
