//! The PostgreSQL schema: the same tables as SQLite's after all of its migrations, in
//! PostgreSQL's types (times in milliseconds as `BIGINT`, blobs as `BYTEA`, flags as `BOOLEAN`),
//! plus what several hosts need: leases on scheduled reconciliation runs.
//!
//! Migrations are applied in order; `refundry_schema` holds how many have run. They start at one
//! with the whole schema: no PostgreSQL ledger predates it.

/// Schema migrations, applied in order.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: everything SQLite's nine migrations built, and the leases of scheduled work.
    "CREATE TABLE plugin_kv (
        provider   TEXT NOT NULL,
        key        TEXT NOT NULL,
        value      BYTEA NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (provider, key)
    );

    CREATE TABLE refunds (
        id                      TEXT PRIMARY KEY,
        provider                TEXT NOT NULL,
        plugin_version          TEXT NOT NULL,
        plugin_sha256           TEXT NOT NULL,
        external_refund_id      TEXT NOT NULL,
        original_transaction_id TEXT NOT NULL,
        amount                  BIGINT NOT NULL CHECK (amount > 0),
        currency                TEXT NOT NULL,
        reason                  TEXT,
        order_id                TEXT,
        status                  TEXT NOT NULL
            CHECK (status IN ('pending', 'processed', 'failed', 'reversed', 'unknown')),
        provider_refund_id      TEXT,
        provider_status         TEXT,
        failure                 TEXT,
        outcome                 TEXT,
        fingerprint             TEXT NOT NULL,
        checks                  BIGINT NOT NULL DEFAULT 0,
        next_check_at           BIGINT,
        created_at              BIGINT NOT NULL,
        updated_at              BIGINT NOT NULL,
        processed_at            BIGINT,
        UNIQUE (provider, external_refund_id)
    );
    CREATE INDEX refunds_due ON refunds (next_check_at) WHERE next_check_at IS NOT NULL;
    CREATE INDEX refunds_by_original ON refunds (provider, original_transaction_id);
    CREATE INDEX refunds_by_provider_id ON refunds (provider, provider_refund_id);
    CREATE INDEX refunds_by_created ON refunds (created_at);
    CREATE INDEX refunds_by_status ON refunds (provider, plugin_version, status);
    CREATE INDEX refunds_not_final ON refunds (provider, created_at)
        WHERE status IN ('pending', 'unknown');
    CREATE INDEX refunds_by_provider_created ON refunds (provider, created_at);

    -- The key row decides idempotency: `begin` inserts it first (a second host inserting the
    -- same key waits for the first one's transaction, then finds its row), before the refund it
    -- names, so the reference is checked when the transaction commits.
    CREATE TABLE idempotency_keys (
        provider           TEXT NOT NULL,
        external_refund_id TEXT NOT NULL,
        fingerprint        TEXT NOT NULL,
        refund_id          TEXT NOT NULL REFERENCES refunds (id) DEFERRABLE INITIALLY DEFERRED,
        created_at         BIGINT NOT NULL,
        PRIMARY KEY (provider, external_refund_id)
    );

    CREATE TABLE refund_history (
        seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        refund_id       TEXT NOT NULL REFERENCES refunds (id),
        at              BIGINT NOT NULL,
        source          TEXT NOT NULL
            CHECK (source IN ('api', 'webhook', 'janitor', 'reconcile')),
        from_status     TEXT,
        to_status       TEXT NOT NULL,
        applied         BOOLEAN NOT NULL,
        provider_status TEXT,
        detail          TEXT,
        plugin_version  TEXT
    );
    CREATE INDEX refund_history_by_refund ON refund_history (refund_id, seq);
    CREATE FUNCTION refund_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refund history is append-only'; END $$;
    CREATE TRIGGER refund_history_no_change BEFORE UPDATE OR DELETE ON refund_history
        FOR EACH ROW EXECUTE FUNCTION refund_history_append_only();
    CREATE TRIGGER refund_history_no_truncate BEFORE TRUNCATE ON refund_history
        FOR EACH STATEMENT EXECUTE FUNCTION refund_history_append_only();

    CREATE TABLE webhook_inbox (
        provider           TEXT NOT NULL,
        event_id           TEXT NOT NULL,
        event_type         TEXT NOT NULL,
        provider_refund_id TEXT,
        external_refund_id TEXT,
        status             TEXT NOT NULL,
        body               BYTEA NOT NULL,
        received_at        BIGINT NOT NULL,
        result             TEXT NOT NULL,
        refund_id          TEXT,
        -- Arrival order within a millisecond (SQLite's rowid): held events apply in it.
        seq                BIGINT GENERATED ALWAYS AS IDENTITY,
        PRIMARY KEY (provider, event_id)
    );
    CREATE INDEX webhook_inbox_unmatched ON webhook_inbox (provider, provider_refund_id)
        WHERE result = 'unmatched';

    CREATE TABLE http_exchanges (
        seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        refund_id        TEXT,
        provider         TEXT NOT NULL,
        operation        TEXT NOT NULL,
        method           TEXT NOT NULL,
        url              TEXT NOT NULL,
        request_headers  TEXT NOT NULL,
        request_body     TEXT,
        status           BIGINT,
        response_headers TEXT NOT NULL,
        response_body    TEXT,
        error            TEXT,
        latency_ms       DOUBLE PRECISION NOT NULL,
        sent_at          BIGINT NOT NULL
    );
    CREATE INDEX http_exchanges_by_refund ON http_exchanges (refund_id, seq);

    CREATE TABLE plugin_versions (
        provider  TEXT NOT NULL,
        version   TEXT NOT NULL,
        sha256    TEXT NOT NULL,
        component BYTEA NOT NULL,
        loaded_at BIGINT NOT NULL,
        PRIMARY KEY (provider, version)
    );
    CREATE TABLE plugin_active (
        provider     TEXT PRIMARY KEY,
        version      TEXT NOT NULL,
        activated_at BIGINT NOT NULL
    );
    CREATE TABLE plugin_configured (
        provider   TEXT PRIMARY KEY,
        sha256     TEXT NOT NULL,
        applied_at BIGINT NOT NULL
    );

    -- Events are keyed by the refund (or reconciliation run) their deliveries are ordered by.
    -- Each event's deliveries are written with it, to every endpoint known then: with several
    -- hosts writing at once, sequence numbers are not committed in order, so a cursor over them
    -- (SQLite's `after_seq`) could pass an event still being written.
    CREATE TABLE events (
        seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        refund_id  TEXT NOT NULL,
        type       TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        body       TEXT NOT NULL
    );
    CREATE INDEX events_by_refund ON events (refund_id, seq);
    -- `retired`: no longer in the hosts' configuration; new events get no delivery to it (its
    -- pending ones stay, as on SQLite, and go out again if it comes back).
    CREATE TABLE event_endpoints (
        endpoint   TEXT PRIMARY KEY,
        after_seq  BIGINT NOT NULL,
        added_at   BIGINT NOT NULL,
        retired    BOOLEAN NOT NULL DEFAULT false
    );
    CREATE TABLE event_deliveries (
        event_seq       BIGINT NOT NULL REFERENCES events (seq),
        endpoint        TEXT NOT NULL,
        refund_id       TEXT NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'abandoned')),
        attempts        BIGINT NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL,
        delivered_at    BIGINT,
        PRIMARY KEY (event_seq, endpoint)
    );
    CREATE INDEX event_deliveries_pending ON event_deliveries (endpoint, refund_id, event_seq)
        WHERE state = 'pending';
    CREATE INDEX event_deliveries_due ON event_deliveries (next_attempt_at)
        WHERE state = 'pending';
    CREATE TABLE event_attempts (
        event_seq   BIGINT NOT NULL,
        endpoint    TEXT NOT NULL,
        attempt     BIGINT NOT NULL,
        at          BIGINT NOT NULL,
        http_status BIGINT,
        error       TEXT,
        latency_ms  DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (event_seq, endpoint, attempt)
    );

    CREATE TABLE recordings (
        id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        refund_id      TEXT NOT NULL,
        seq            BIGINT NOT NULL,
        operation      TEXT NOT NULL,
        provider       TEXT NOT NULL,
        plugin_version TEXT NOT NULL,
        plugin_sha256  TEXT NOT NULL,
        recorded_at    BIGINT NOT NULL,
        truncated      BOOLEAN NOT NULL,
        size           BIGINT NOT NULL,
        recording      TEXT NOT NULL,
        UNIQUE (refund_id, seq)
    );
    -- The bytes of every recording together (one row), kept by each insert and its trim of the
    -- oldest rows, which run one at a time: the total size cap holds across hosts without
    -- summing the table at every insert.
    CREATE TABLE recordings_total (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        bytes BIGINT NOT NULL
    );
    INSERT INTO recordings_total (id, bytes) VALUES (1, 0);

    CREATE TABLE artifact_key (
        id  INTEGER PRIMARY KEY CHECK (id = 1),
        key BYTEA NOT NULL
    );

    CREATE TABLE reconciliations (
        id               TEXT PRIMARY KEY,
        provider         TEXT NOT NULL,
        range_from       BIGINT NOT NULL,
        range_to         BIGINT NOT NULL,
        trigger          TEXT NOT NULL CHECK (trigger IN ('schedule', 'cli', 'api')),
        started_at       BIGINT NOT NULL,
        finished_at      BIGINT NOT NULL,
        outcome          TEXT NOT NULL CHECK (outcome IN ('matched', 'discrepancies', 'error')),
        error            TEXT,
        provider_refunds BIGINT NOT NULL,
        ledger_refunds   BIGINT NOT NULL
    );
    CREATE INDEX reconciliations_by_provider ON reconciliations (provider, id);
    CREATE TABLE reconciliation_findings (
        reconciliation_id  TEXT NOT NULL REFERENCES reconciliations (id),
        seq                BIGINT NOT NULL,
        kind               TEXT NOT NULL CHECK (kind IN ('missing_in_ledger',
            'missing_at_provider', 'status_mismatch', 'amount_mismatch', 'currency_mismatch')),
        refund_id          TEXT REFERENCES refunds (id),
        external_refund_id TEXT,
        provider_refund_id TEXT,
        ledger_status      TEXT,
        ledger_amount      BIGINT,
        ledger_currency    TEXT,
        provider_status    TEXT,
        provider_amount    BIGINT,
        provider_currency  TEXT,
        applied            BOOLEAN NOT NULL,
        detail             TEXT NOT NULL,
        PRIMARY KEY (reconciliation_id, seq)
    );

    -- Scheduled work that one host at a time does (a provider's scheduled reconciliation): the
    -- host that claims a row holds it until `leased_until`; a host that dies loses it then.
    CREATE TABLE leases (
        name         TEXT PRIMARY KEY,
        holder       TEXT,
        leased_until BIGINT NOT NULL DEFAULT 0,
        next_due_at  BIGINT NOT NULL DEFAULT 0
    );",
];
