-- Seed data for the cache-aside lab.
--
-- Idempotent: running it twice changes nothing. labkit runs it (with a
-- private search_path) for every isolated test, and the compose file mounts it
-- into Postgres' init directory.
CREATE TABLE IF NOT EXISTS users (
    id         integer     PRIMARY KEY,
    name       text        NOT NULL,
    email      text        NOT NULL UNIQUE,
    plan       text        NOT NULL CHECK (plan IN ('free', 'pro', 'enterprise')),
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO users (id, name, email, plan) VALUES
    (1, 'Ada Lovelace',    'ada@example.com',    'pro'),
    (2, 'Alan Turing',     'alan@example.com',   'free'),
    (3, 'Grace Hopper',    'grace@example.com',  'enterprise'),
    (4, 'Edsger Dijkstra', 'edsger@example.com', 'free'),
    (5, 'Barbara Liskov',  'barbara@example.com', 'pro')
ON CONFLICT (id) DO NOTHING;
