-- The PostgreSQL store of linq-hooks (crates/outbox/src/postgres): what the redb store keeps,
-- in tables. Times are milliseconds since the UNIX epoch (bigint), as in the redb records.
-- Delivery states (smallint): 0 pending, 1 delivered, 2 failed, 3 cancelled, 4 quarantined.

-- Hook ids: one sequence, never reused (`hook_N`).
CREATE SEQUENCE hook_ids;
CREATE SEQUENCE event_ids;
CREATE SEQUENCE delivery_ids;

-- Workflows: id (a LINQ workflow UUID or a name, ordered bytewise as in the redb store), their
-- hooks in document order, and their signing secrets (`whsec_…`): the current one, and those
-- rotated out with the ends of their grace periods (same length, oldest first).
CREATE TABLE workflows (
    id text COLLATE "C" PRIMARY KEY,
    created_ms bigint NOT NULL,
    updated_ms bigint NOT NULL,
    secret text NOT NULL,
    previous_secrets text[] NOT NULL DEFAULT '{}',
    previous_until bigint[] NOT NULL DEFAULT '{}',
    hooks bigint[] NOT NULL DEFAULT '{}'
);

-- Hooks: definition (the hook in the LINQ API's JSON form) and delivery state. Kept after
-- removal (removed_ms set), so that old deliveries still name their hook and workflow.
-- Pending and failed counts are counted from `deliveries` (indexed), not kept here, so that
-- concurrent ingests do not contend on a hook's row.
CREATE TABLE hooks (
    id bigint PRIMARY KEY,
    workflow text COLLATE "C" NOT NULL,
    definition text NOT NULL,
    removed_ms bigint,
    disabled_ms bigint,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_attempt_ms bigint,
    last_status integer
);
CREATE INDEX hooks_workflow ON hooks (workflow);

-- Event bodies, kept while any of their deliveries is.
CREATE TABLE events (
    id bigint PRIMARY KEY,
    body bytea NOT NULL,
    received_ms bigint NOT NULL
);

CREATE TABLE deliveries (
    id bigint PRIMARY KEY,
    hook bigint NOT NULL,
    event bigint NOT NULL,
    webhook_id text NOT NULL,
    state smallint NOT NULL,
    -- Attempts in this round (a replay or an enable starts a new one): what the retry policy counts.
    round_attempts integer NOT NULL DEFAULT 0,
    -- Attempts ever made: the number of the last attempt row.
    attempts integer NOT NULL DEFAULT 0,
    created_ms bigint NOT NULL,
    next_attempt_ms bigint,
    finished_ms bigint,
    failure text,
    last_attempt_ms bigint,
    last_status integer
);
-- Each hook's queue, in order.
CREATE INDEX deliveries_queue ON deliveries (hook, id) WHERE state = 0;
-- Each hook's deliveries by state (listing by hook or workflow, recovering failed ones, counts).
CREATE INDEX deliveries_hook_state ON deliveries (hook, state, id);
CREATE INDEX deliveries_state ON deliveries (state, id);
CREATE INDEX deliveries_event ON deliveries (event, id);
-- Pruning delivered deliveries after the retention.
CREATE INDEX deliveries_delivered ON deliveries (finished_ms) WHERE state = 1;

-- Every attempt; `body` is the first 1 KiB of the answer's body, as text.
CREATE TABLE attempts (
    delivery bigint NOT NULL,
    number integer NOT NULL,
    at_ms bigint NOT NULL,
    latency_us bigint NOT NULL,
    status integer,
    error text,
    response_body text,
    response_body_truncated boolean NOT NULL DEFAULT false,
    PRIMARY KEY (delivery, number)
);

-- Ingest idempotency keys (bytes: a key may hold NUL, as `workflow NUL key` does): what the
-- first ingest stored (JSON: per event, its id and its
-- deliveries as [id, hook, webhook-id]), until expires_ms.
CREATE TABLE idempotency_keys (
    key bytea PRIMARY KEY,
    fingerprint text NOT NULL,
    expires_ms bigint NOT NULL,
    accepted text NOT NULL
);
CREATE INDEX idempotency_expiry ON idempotency_keys (expires_ms);
