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
