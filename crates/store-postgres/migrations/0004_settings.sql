-- Per-tenant settings (the catalogue of actions and event types; retention rules and legal
-- holds later), each a JSON document under a name, with a version that counts its updates.
CREATE TABLE tenant_settings (
    tenant     text        NOT NULL,
    name       text        NOT NULL,
    value      jsonb       NOT NULL,
    version    bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, name)
);
