-- Migration 4: the database holds the sealed log and nothing derived from it.
--
-- `log` keeps, per event, only what the acknowledged write must: its key (tenant, seq), its
-- unique id, the idempotency digest, its leaf hash, the sealed entry and the erasable personal
-- values beside it. Filter indexes and timeline links are derived data now, rebuilt from the
-- log into the index file (sealtrail-index.db) behind it. Rows written before entries were
-- stored (schema version 2) keep their served JSON, personal digests and predecessor hash in
-- the legacy_* columns, and read and verify as before.
CREATE TABLE log (
    tenant          TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    id              BLOB    NOT NULL,
    digest          BLOB    NOT NULL,
    hash            BLOB    NOT NULL,
    entry           BLOB,
    personal_values BLOB,
    legacy_body     TEXT,
    legacy_personal BLOB,
    legacy_prev     BLOB,
    PRIMARY KEY (tenant, seq)
) WITHOUT ROWID;

INSERT INTO log (tenant, seq, id, digest, hash, entry, personal_values,
                 legacy_body, legacy_personal, legacy_prev)
SELECT tenant, seq, id, digest, hash, entry, personal_values,
       CASE WHEN entry IS NULL THEN body END,
       CASE WHEN entry IS NULL THEN personal END,
       CASE WHEN entry IS NULL THEN prev_hash END
FROM events ORDER BY tenant, seq;

CREATE UNIQUE INDEX log_id ON log (id);

-- The old table's filter columns, indexes and triggers go with it.
DROP TABLE events;
DROP TABLE event_links;

CREATE TRIGGER log_immutable_update BEFORE UPDATE ON log
    WHEN NOT EXISTS (SELECT 1 FROM sanction)
    BEGIN SELECT RAISE(ABORT, 'sealtrail: audit events are immutable'); END;
CREATE TRIGGER log_immutable_delete BEFORE DELETE ON log
    WHEN NOT EXISTS (SELECT 1 FROM sanction)
    BEGIN SELECT RAISE(ABORT, 'sealtrail: audit events are immutable'); END;
