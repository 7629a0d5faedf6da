-- Timestamps are RFC 3339 text in UTC (as sqlx writes chrono values), which sorts in time order.
-- Booleans are declared BOOLEAN so sqlx decodes them as bool.

CREATE TABLE users (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

-- Only the SHA-256 of a token is kept, so a leaked database grants no access.
CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('api', 'login-once', 'session')),
    created_at TEXT NOT NULL
);
CREATE INDEX api_tokens_user_id ON api_tokens (user_id);

CREATE TABLE projects (
    id              TEXT PRIMARY KEY NOT NULL,
    name            TEXT NOT NULL CONSTRAINT project_name_not_empty CHECK (name <> ''),
    name_is_default BOOLEAN NOT NULL,
    sandbox_id      TEXT,
    image_url       TEXT,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX projects_user_id_updated_at ON projects (user_id, updated_at);

CREATE TABLE messages (
    id         TEXT PRIMARY KEY NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('USER', 'ASSISTANT')),
    type       TEXT NOT NULL CHECK (type IN ('RESULT', 'ERROR')),
    content    TEXT NOT NULL CONSTRAINT message_content_not_empty CHECK (content <> ''),
    image_url  TEXT,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX messages_project_id_created_at ON messages (project_id, created_at, id);
CREATE INDEX messages_user_id ON messages (user_id);

CREATE TABLE fragments (
    id          TEXT PRIMARY KEY NOT NULL,
    message_id  TEXT NOT NULL UNIQUE REFERENCES messages (id) ON DELETE CASCADE,
    sandbox_url TEXT NOT NULL,
    sandbox_id  TEXT,
    title       TEXT NOT NULL,
    files       TEXT NOT NULL
        CONSTRAINT fragment_files_is_object CHECK (json_valid(files) AND json_type(files) = 'object'),
    image_url   TEXT,
    design_spec TEXT CONSTRAINT fragment_design_spec_is_json CHECK (design_spec IS NULL OR json_valid(design_spec)),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
