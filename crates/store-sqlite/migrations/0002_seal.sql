-- Migration 2: the seal. Each event keeps its predecessor's leaf hash and the keyed digests of
-- its personal fields; every completed perfect Merkle node above the leaves is kept, so proofs
-- and the frontier cost O(log n) reads; subject keys make the personal digests.
ALTER TABLE events ADD COLUMN prev_hash BLOB;
ALTER TABLE events ADD COLUMN personal BLOB;

CREATE TABLE tree_nodes (
    tenant TEXT    NOT NULL,
    level  INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    hash   BLOB    NOT NULL,
    PRIMARY KEY (tenant, level, idx)
) WITHOUT ROWID;

CREATE TABLE subject_keys (
    tenant  TEXT NOT NULL,
    subject TEXT NOT NULL,
    key     BLOB,
    PRIMARY KEY (tenant, subject)
) WITHOUT ROWID;

-- The head of each tenant's tree after the last commit (derived; the writer keeps it current).
CREATE TABLE tree_heads (
    tenant TEXT    PRIMARY KEY,
    size   INTEGER NOT NULL,
    root   BLOB    NOT NULL
) WITHOUT ROWID;

-- Signed tree heads, newest last.
CREATE TABLE checkpoints (
    tenant    TEXT    NOT NULL,
    size      INTEGER NOT NULL,
    root      BLOB    NOT NULL,
    issued_at INTEGER NOT NULL,
    key_id    TEXT    NOT NULL,
    signature TEXT    NOT NULL,
    note      TEXT    NOT NULL,
    PRIMARY KEY (tenant, issued_at, size)
) WITHOUT ROWID;

-- Immutability, enforced by the database itself: events, links, tree nodes and checkpoints
-- reject UPDATE and DELETE unless the one sanctioned path (retention, anonymisation) has
-- opened a sanction inside its own transaction; that path also records an audit event.
CREATE TABLE sanction (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    reason TEXT    NOT NULL
);
CREATE TRIGGER events_immutable_update BEFORE UPDATE ON events
    WHEN NOT EXISTS (SELECT 1 FROM sanction)
    BEGIN SELECT RAISE(ABORT, 'sealtrail: audit events are immutable'); END;
CREATE TRIGGER events_immutable_delete BEFORE DELETE ON events
    WHEN NOT EXISTS (SELECT 1 FROM sanction)
    BEGIN SELECT RAISE(ABORT, 'sealtrail: audit events are immutable'); END;
CREATE TRIGGER links_immutable_update BEFORE UPDATE ON event_links
    WHEN NOT EXISTS (SELECT 1 FROM sanction)
    BEGIN SELECT RAISE(ABORT, 'sealtrail: audit events are immutable'); END;
CREATE TRIGGER links_immutable_delete BEFORE DELETE ON event_links
    WHEN NOT EXISTS (SELECT 1 FROM sanction)
    BEGIN SELECT RAISE(ABORT, 'sealtrail: audit events are immutable'); END;
CREATE TRIGGER nodes_immutable_update BEFORE UPDATE ON tree_nodes
    BEGIN SELECT RAISE(ABORT, 'sealtrail: tree nodes are immutable'); END;
CREATE TRIGGER nodes_immutable_delete BEFORE DELETE ON tree_nodes
    BEGIN SELECT RAISE(ABORT, 'sealtrail: tree nodes are immutable'); END;
CREATE TRIGGER checkpoints_immutable_update BEFORE UPDATE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'sealtrail: checkpoints are immutable'); END;
CREATE TRIGGER checkpoints_immutable_delete BEFORE DELETE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'sealtrail: checkpoints are immutable'); END;
