-- Migration 3: the sealed entry is the event's only copy. New rows keep the canonical entry
-- (docs/integrity.md §4) in `entry` and the erasable personal values beside it in
-- `personal_values`; reads render the event from them, and `body` stays empty (`personal`,
-- the digests, is inside the entry and stays NULL). Rows written before keep their JSON `body`
-- and are read and verified as before.
ALTER TABLE events ADD COLUMN entry BLOB;
ALTER TABLE events ADD COLUMN personal_values BLOB;
