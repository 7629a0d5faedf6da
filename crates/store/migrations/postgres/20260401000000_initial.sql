-- Ids are uuid strings kept as TEXT, the same as on SQLite, so every query is shared by both backends.

CREATE TABLE users (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL
);

-- Only the SHA-256 of a token is kept, so a leaked database grants no access.
CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('api', 'login-once', 'session')),
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX api_tokens_user_id ON api_tokens (user_id);

CREATE TABLE projects (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL CONSTRAINT project_name_not_empty CHECK (name <> ''),
    name_is_default BOOLEAN NOT NULL,
    sandbox_id      TEXT,
    image_url       TEXT,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX projects_user_id_updated_at ON projects (user_id, updated_at);

CREATE TABLE messages (
    id         TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('USER', 'ASSISTANT')),
    type       TEXT NOT NULL CHECK (type IN ('RESULT', 'ERROR')),
    content    TEXT NOT NULL CONSTRAINT message_content_not_empty CHECK (content <> ''),
    image_url  TEXT,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX messages_project_id_created_at ON messages (project_id, created_at, id);
CREATE INDEX messages_user_id ON messages (user_id);

CREATE TABLE fragments (
    id          TEXT PRIMARY KEY,
    message_id  TEXT NOT NULL UNIQUE REFERENCES messages (id) ON DELETE CASCADE,
    sandbox_url TEXT NOT NULL,
    sandbox_id  TEXT,
    title       TEXT NOT NULL,
    files       JSONB NOT NULL CONSTRAINT fragment_files_is_object CHECK (jsonb_typeof(files) = 'object'),
    image_url   TEXT,
    design_spec JSONB,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
