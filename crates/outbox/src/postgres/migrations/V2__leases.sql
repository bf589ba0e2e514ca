-- STAND-IN (P1): P2 owns this file and its real content; the lead merges P2's over it.
-- The tables are the contract's (notes/contract13.md).
CREATE TABLE processes (
    owner uuid PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE TABLE leases (
    hook bigint PRIMARY KEY,
    owner uuid NOT NULL,
    expires_at timestamptz NOT NULL
);
