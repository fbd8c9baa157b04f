"""The PostgreSQL schema as numbered migrations: append, never edit one that shipped."""
from __future__ import annotations

# Times a client sees (created_at, finished_at, ...) are epoch seconds as in the
# SQLite store; liveness (heartbeats, runs) uses the database's clock, so that
# nodes with skewed clocks still agree on who is dead.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        capacity JSONB NOT NULL DEFAULT '{}',
        load JSONB NOT NULL DEFAULT '{}'
    );
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        seq BIGSERIAL NOT NULL,
        status TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        filename TEXT NOT NULL,
        input_name TEXT NOT NULL,
        options JSONB NOT NULL,
        media JSONB NOT NULL,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        expires_at DOUBLE PRECISION,
        expired BOOLEAN NOT NULL DEFAULT false,
        result_name TEXT,
        result_bytes BIGINT,
        frames_done INTEGER NOT NULL DEFAULT 0,
        frames_total INTEGER,
        fps DOUBLE PRECISION,
        eta_s DOUBLE PRECISION,
        error TEXT,
        interruptions INTEGER NOT NULL DEFAULT 0,
        node_id TEXT,
        run_id BIGINT,
        cancel_requested BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX jobs_status_created ON jobs (status, created_at, seq);
    CREATE INDEX jobs_created ON jobs (created_at DESC, seq DESC);
    CREATE TABLE job_runs (
        id BIGSERIAL PRIMARY KEY,
        job_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
        ended_at TIMESTAMPTZ,
        outcome TEXT
    );
    CREATE INDEX job_runs_job ON job_runs (job_id);
    CREATE TABLE streams (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        background TEXT NOT NULL,
        record BOOLEAN NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        owner TEXT,
        owned_since TIMESTAMPTZ,
        takeovers INTEGER NOT NULL DEFAULT 0
    );
    """,
    # job webhooks: {"url", "state", "attempts"} (server.jobs.webhooks)
    "ALTER TABLE jobs ADD COLUMN callback JSONB;",
]
