-- The demo's upstream database: a table the postgres_logical source records, with full
-- old values on update and delete, published for logical replication.
CREATE DATABASE shop;
\connect shop
CREATE TABLE orders (id bigserial PRIMARY KEY, customer text NOT NULL, total_cents bigint NOT NULL, status text NOT NULL DEFAULT 'new');
ALTER TABLE orders REPLICA IDENTITY FULL;
CREATE PUBLICATION audit_ledger FOR TABLE orders;
