-- Per-tenant settings (the catalogue of actions and event types; retention rules and legal
-- holds later), each a JSON document under a name, with a version that counts its updates.
CREATE TABLE tenant_settings (
    tenant     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
