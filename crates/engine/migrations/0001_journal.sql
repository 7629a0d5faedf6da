-- Events as received. `client_id` is the sender's optional id, used to drop repeats within 24 h.
CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    client_id   TEXT,
    name        TEXT NOT NULL,
    data        TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX events_by_client_id ON events (client_id, received_at);

-- One row per function run; `seq` gives the FIFO order within a concurrency key.
CREATE TABLE runs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    function_id      TEXT NOT NULL,
    event_id         TEXT NOT NULL REFERENCES events (id),
    concurrency_key  TEXT,
    status           TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    failure          TEXT,
    output           TEXT,
    error            TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    ended_at         INTEGER
);
CREATE INDEX runs_unfinished ON runs (status) WHERE status IN ('queued', 'running');
CREATE INDEX runs_by_key ON runs (function_id, concurrency_key, seq);

-- The step journal: a completed step's output is returned on replay instead of running it again.
CREATE TABLE steps (
    run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_id    TEXT NOT NULL,
    name       TEXT NOT NULL,
    position   INTEGER NOT NULL,
    status     TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    output     TEXT,
    error      TEXT,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    PRIMARY KEY (run_id, step_id)
);

-- Realtime messages, kept for the retention period so subscribers can replay from an id.
CREATE TABLE realtime (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    channel    TEXT NOT NULL,
    topic      TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX realtime_by_channel ON realtime (channel, id);
CREATE INDEX realtime_by_age ON realtime (created_at);
