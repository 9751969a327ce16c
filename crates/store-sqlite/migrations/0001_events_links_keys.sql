-- Migration 1: events, their related-entity links, and API keys.
CREATE TABLE events (
    rowid           INTEGER PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    id              BLOB    NOT NULL,
    recorded_at     INTEGER NOT NULL,
    occurred_at     INTEGER NOT NULL,
    action          TEXT    NOT NULL,
    category        TEXT    NOT NULL,
    event_type      TEXT,
    outcome         TEXT    NOT NULL,
    actor_id        TEXT    NOT NULL,
    target_type     TEXT,
    target_id       TEXT,
    organization_id TEXT,
    correlation_id  TEXT,
    ip              TEXT,
    digest          BLOB    NOT NULL,
    hash            BLOB    NOT NULL,
    body            TEXT    NOT NULL
);
CREATE UNIQUE INDEX events_tenant_seq ON events (tenant, seq);
CREATE UNIQUE INDEX events_id ON events (id);
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

CREATE TABLE event_links (
    tenant TEXT    NOT NULL,
    type   TEXT    NOT NULL,
    id     TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (tenant, type, id, seq)
) WITHOUT ROWID;

CREATE TABLE api_keys (
    id          TEXT    PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    scopes      TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    token_hash  BLOB    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
