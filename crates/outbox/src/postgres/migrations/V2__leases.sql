-- Several `serve` processes on one database: who is alive, and who delivers which hook.
-- See `postgres/cluster.rs` for the protocol. Expiry times are the database's `now()`, so the
-- processes' clocks never need to agree.

-- One row per running process (a fresh owner id each start), kept alive by its heartbeat
-- every lease/3; a row whose expiry has passed is a dead process.
CREATE TABLE processes (
    owner uuid PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

-- One row per hook that some process delivers. The owner renews it every lease/3; once
-- `expires_at` has passed, any process below its share may take it over.
CREATE TABLE leases (
    hook bigint PRIMARY KEY,
    owner uuid NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE INDEX leases_owner ON leases (owner);
