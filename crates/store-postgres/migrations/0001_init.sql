-- Migration 1: everything the PostgreSQL store keeps, in its own schema (the connection's
-- search_path names it). The layout follows the SQLite store; what differs is said here.

-- Events are range-partitioned by month on recorded_at; partitions are made ahead of time by
-- the store (at start and by a background job). A primary key of a partitioned table must
-- hold the partition key, so global uniqueness of (tenant, seq) and of id lives in `leaves`.
CREATE TABLE events (
    tenant          text        NOT NULL,
    seq             bigint      NOT NULL,
    id              uuid        NOT NULL,
    recorded_at     timestamptz NOT NULL,
    occurred_at     timestamptz NOT NULL,
    action          text        NOT NULL,
    category        text        NOT NULL,
    event_type      text,
    outcome         text        NOT NULL,
    actor_id        text        NOT NULL,
    target_type     text,
    target_id       text,
    organization_id text,
    correlation_id  text,
    ip              text,
    hash            bytea       NOT NULL,
    prev_hash       bytea       NOT NULL,
    personal        bytea       NOT NULL,
    metadata        jsonb,
    body            text        NOT NULL,
    PRIMARY KEY (tenant, seq, recorded_at)
) PARTITION BY RANGE (recorded_at);
CREATE INDEX events_actor ON events (tenant, actor_id, seq);
CREATE INDEX events_target ON events (tenant, target_type, target_id, seq);
CREATE INDEX events_action ON events (tenant, action, seq);
CREATE INDEX events_category ON events (tenant, category, seq);
CREATE INDEX events_event_type ON events (tenant, event_type, seq) WHERE event_type IS NOT NULL;
CREATE INDEX events_organization ON events (tenant, organization_id, seq) WHERE organization_id IS NOT NULL;
CREATE INDEX events_correlation ON events (tenant, correlation_id, seq) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_ip ON events (tenant, ip, seq) WHERE ip IS NOT NULL;
CREATE INDEX events_failures ON events (tenant, seq) WHERE outcome = 'failure';
CREATE INDEX events_occurred ON events (tenant, occurred_at, seq);
CREATE INDEX events_metadata ON events USING gin (metadata jsonb_path_ops);

-- One narrow row per event outside the partitions: the database itself keeps (tenant, seq)
-- unique across every writer process and ids globally unique; it serves lookups by id (with the
-- recorded_at that prunes partitions), idempotency digests, level-0 nodes for proofs, and the
-- occurred_at that orders a timeline before any wide event row is read.
CREATE TABLE leaves (
    tenant      text        NOT NULL,
    seq         bigint      NOT NULL,
    id          uuid        NOT NULL UNIQUE,
    recorded_at timestamptz NOT NULL,
    occurred_at timestamptz NOT NULL,
    digest      bytea       NOT NULL,
    hash        bytea       NOT NULL,
    PRIMARY KEY (tenant, seq)
);

CREATE TABLE event_links (
    tenant text   NOT NULL,
    type   text   NOT NULL,
    id     text   NOT NULL,
    seq    bigint NOT NULL,
    PRIMARY KEY (tenant, type, id, seq)
);

CREATE TABLE api_keys (
    id         text        PRIMARY KEY,
    tenant     text        NOT NULL,
    scopes     text        NOT NULL,
    name       text        NOT NULL,
    token_hash bytea       NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);

-- Where each tenant's log ends: size, last leaf, the Merkle frontier (the perfect subtree
-- roots of the current tree, 32 bytes each, largest first) and root. Writers serialise on a
-- per-tenant advisory lock and read this row, so no process trusts a cached log end.
CREATE TABLE tenant_logs (
    tenant           text        PRIMARY KEY,
    size             bigint      NOT NULL DEFAULT 0,
    last_hash        bytea,
    frontier         bytea       NOT NULL DEFAULT '\x'::bytea,
    root             bytea,
    last_recorded_at timestamptz
);

CREATE TABLE tree_nodes (
    tenant text    NOT NULL,
    level  integer NOT NULL,
    idx    bigint  NOT NULL,
    hash   bytea   NOT NULL,
    PRIMARY KEY (tenant, level, idx)
);

CREATE TABLE subject_keys (
    tenant  text NOT NULL,
    subject text NOT NULL,
    key     bytea,
    PRIMARY KEY (tenant, subject)
);

CREATE TABLE checkpoints (
    tenant    text        NOT NULL,
    size      bigint      NOT NULL,
    root      bytea       NOT NULL,
    issued_at timestamptz NOT NULL,
    key_id    text        NOT NULL,
    signature text        NOT NULL,
    note      text        NOT NULL,
    PRIMARY KEY (tenant, issued_at, size)
);

-- Public keys of every server that signs checkpoints into this database, so that
-- `sealtrail verify --database-url` knows them (like keyring.json in a data directory).
CREATE TABLE signing_keys (
    key_id     text        PRIMARY KEY,
    public_key text        NOT NULL,
    created_at timestamptz NOT NULL,
    retired_at timestamptz
);

-- Immutability, enforced by the database itself. Events, leaves and links refuse UPDATE and
-- DELETE unless the sanctioned path (retention, anonymisation) has opened a sanction inside
-- its own transaction (a row no other transaction can see); tree nodes and checkpoints refuse
-- them always. TRUNCATE is refused too.
CREATE TABLE sanction (
    id     integer PRIMARY KEY CHECK (id = 1),
    reason text    NOT NULL
);

CREATE FUNCTION refuse_change() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_NARGS > 0 AND TG_ARGV[0] = 'sanctionable' AND EXISTS (SELECT 1 FROM sanction) THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'sealtrail: % rows are immutable', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE TRIGGER events_immutable BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION refuse_change('sanctionable');
CREATE TRIGGER leaves_immutable BEFORE UPDATE OR DELETE ON leaves
    FOR EACH ROW EXECUTE FUNCTION refuse_change('sanctionable');
CREATE TRIGGER links_immutable BEFORE UPDATE OR DELETE ON event_links
    FOR EACH ROW EXECUTE FUNCTION refuse_change('sanctionable');
CREATE TRIGGER nodes_immutable BEFORE UPDATE OR DELETE ON tree_nodes
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER checkpoints_immutable BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER leaves_no_truncate BEFORE TRUNCATE ON leaves
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER links_no_truncate BEFORE TRUNCATE ON event_links
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER nodes_no_truncate BEFORE TRUNCATE ON tree_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
