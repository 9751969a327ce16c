-- Migration 2: the acknowledged write holds the sealed log and nothing derived from it.
--
-- An event is now its sealed entry (the canonical bytes its leaf hash covers) and the erasable
-- personal values beside it, in `events` (still partitioned by month), with its key, id,
-- digest and leaf hash in `leaves`. The filter columns, their eleven indexes, the metadata GIN
-- index and `event_links` leave the acknowledged transaction: filters and timelines are
-- answered from derived data that an indexer builds behind the log (`postings`,
-- `event_times`, with each tenant's watermark in `watermarks`, written in one transaction).
-- Rows written before keep their served JSON (`body`), their digests (`personal`) and their
-- predecessor (`prev_hash`), and read and verify as before.
ALTER TABLE events ADD COLUMN entry bytea;
ALTER TABLE events ADD COLUMN personal_values bytea;
ALTER TABLE events
    ALTER COLUMN occurred_at DROP NOT NULL,
    ALTER COLUMN action DROP NOT NULL,
    ALTER COLUMN category DROP NOT NULL,
    ALTER COLUMN outcome DROP NOT NULL,
    ALTER COLUMN actor_id DROP NOT NULL,
    ALTER COLUMN hash DROP NOT NULL,
    ALTER COLUMN prev_hash DROP NOT NULL,
    ALTER COLUMN personal DROP NOT NULL,
    ALTER COLUMN body DROP NOT NULL;
ALTER TABLE leaves ALTER COLUMN occurred_at DROP NOT NULL;

DROP INDEX events_actor, events_target, events_action, events_category, events_event_type,
    events_organization, events_correlation, events_ip, events_failures, events_occurred,
    events_metadata;
DROP TABLE event_links;

-- Derived data. Postings: per term (a declared filter field's value) and chunk of 65 536
-- positions of a tenant's log, a Roaring bitmap of the positions whose event has the term.
CREATE TABLE postings (
    tenant text   NOT NULL,
    chunk  bigint NOT NULL,
    term   bytea  NOT NULL,
    bits   bytea  NOT NULL,
    PRIMARY KEY (tenant, chunk, term)
);

-- Bitmaps are compressed already: stored out of line without another try at compressing
-- them, which cost the indexer most of its time in PostgreSQL when a chunk's bitmaps are
-- rewritten by every pass.
ALTER TABLE postings ALTER COLUMN bits SET STORAGE EXTERNAL;

-- Per block of 4 096 positions, every event's occurred_at and the block's least and greatest.
CREATE TABLE event_times (
    tenant text   NOT NULL,
    block  bigint NOT NULL,
    lo     bigint NOT NULL,
    hi     bigint NOT NULL,
    vals   bytea  NOT NULL,
    PRIMARY KEY (tenant, block)
);

-- How far each tenant's derived data reaches: events 1..=indexed are in it.
CREATE TABLE watermarks (
    tenant  text   PRIMARY KEY,
    indexed bigint NOT NULL
);

-- The version of the derived data (sealtrail_store::fields::DERIVED_VERSION) it was built by.
CREATE TABLE derived_meta (
    key   text    PRIMARY KEY,
    value integer NOT NULL
);
