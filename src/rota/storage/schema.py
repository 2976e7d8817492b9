"""Versioned schema migrations. One list of statements serves both databases: SQLite reads
DOUBLE PRECISION as REAL and both support partial indexes and ON CONFLICT.

Append a migration to add to the schema; never edit one that has shipped.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    # PostgreSQL only, run together after `statements` in a savepoint: when one fails (an
    # extension the role may not create) the migration goes on without them and logs why.
    postgresql_optional: tuple[str, ...] = ()


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "runs, steps, events",
        (
            """CREATE TABLE rota_runs (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                state TEXT NOT NULL,
                payload TEXT,
                result TEXT,
                error TEXT,
                priority INTEGER NOT NULL DEFAULT 0,
                attempt INTEGER NOT NULL DEFAULT 0,
                failures INTEGER NOT NULL DEFAULT 0,
                max_attempts INTEGER NOT NULL DEFAULT 1,
                reclaims INTEGER NOT NULL DEFAULT 0,
                idempotency_key TEXT,
                concurrency_key TEXT,
                concurrency_limit INTEGER,
                principal TEXT,
                trigger TEXT NOT NULL,
                trigger_ref TEXT,
                parent_id TEXT,
                run_after DOUBLE PRECISION NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                started_at DOUBLE PRECISION,
                finished_at DOUBLE PRECISION,
                lease_owner TEXT,
                lease_token INTEGER NOT NULL DEFAULT 0,
                lease_expires_at DOUBLE PRECISION,
                cancel_requested INTEGER NOT NULL DEFAULT 0,
                timeout_s DOUBLE PRECISION
            )""",
            """CREATE UNIQUE INDEX rota_runs_idempotency ON rota_runs (name, idempotency_key)
                WHERE idempotency_key IS NOT NULL""",
            """CREATE INDEX rota_runs_ready ON rota_runs (priority DESC, run_after, id)
                WHERE state = 'ENQUEUED'""",
            """CREATE INDEX rota_runs_leases ON rota_runs (lease_expires_at)
                WHERE state = 'RUNNING'""",
            """CREATE INDEX rota_runs_limited ON rota_runs (concurrency_key, state)
                WHERE concurrency_key IS NOT NULL""",
            "CREATE INDEX rota_runs_name_created ON rota_runs (name, created_at)",
            "CREATE INDEX rota_runs_created ON rota_runs (created_at)",
            """CREATE TABLE rota_steps (
                run_id TEXT NOT NULL REFERENCES rota_runs (id) ON DELETE CASCADE,
                step_key TEXT NOT NULL,
                seq INTEGER NOT NULL,
                name TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                input_hash TEXT,
                result TEXT,
                error TEXT,
                started_at DOUBLE PRECISION NOT NULL,
                finished_at DOUBLE PRECISION NOT NULL,
                lease_token INTEGER NOT NULL,
                PRIMARY KEY (run_id, step_key)
            )""",
            """CREATE TABLE rota_events (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                payload TEXT,
                idempotency_key TEXT,
                source TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )""",
            """CREATE UNIQUE INDEX rota_events_idempotency ON rota_events (name, idempotency_key)
                WHERE idempotency_key IS NOT NULL""",
            "CREATE INDEX rota_events_name_created ON rota_events (name, created_at)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        2,
        "schedules, ticks, rejected webhook deliveries",
        (
            """CREATE TABLE rota_schedules (
                name TEXT PRIMARY KEY,
                job TEXT NOT NULL,
                definition TEXT NOT NULL,
                description TEXT NOT NULL,
                paused INTEGER NOT NULL DEFAULT 0,
                cursor_at DOUBLE PRECISION NOT NULL,
                next_fire_at DOUBLE PRECISION,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX rota_schedules_due ON rota_schedules (next_fire_at)",
            """CREATE TABLE rota_ticks (
                id TEXT PRIMARY KEY,
                schedule TEXT NOT NULL,
                fire_at DOUBLE PRECISION NOT NULL,
                last_fire_at DOUBLE PRECISION NOT NULL,
                ticks INTEGER NOT NULL DEFAULT 1,
                outcome TEXT NOT NULL,
                reason TEXT,
                run_id TEXT,
                decided_at DOUBLE PRECISION NOT NULL,
                decided_by TEXT
            )""",
            "CREATE INDEX rota_ticks_schedule ON rota_ticks (schedule, fire_at)",
            """CREATE INDEX rota_runs_scheduled_active ON rota_runs (trigger_ref)
                WHERE trigger = 'schedule' AND state IN ('ENQUEUED', 'RUNNING', 'WAITING')""",
            """CREATE TABLE rota_rejections (
                id TEXT PRIMARY KEY,
                hook TEXT NOT NULL,
                status INTEGER NOT NULL,
                reason TEXT NOT NULL,
                message TEXT NOT NULL,
                delivery_id TEXT,
                body_bytes INTEGER NOT NULL,
                received_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX rota_rejections_hook ON rota_rejections (hook, received_at)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        3,
        "shared rate limits",
        (
            """CREATE TABLE rota_rate_limits (
                key TEXT PRIMARY KEY,
                tat DOUBLE PRECISION NOT NULL
            )""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        4,
        "identity: principals, API tokens, secrets, audit log",
        (
            """CREATE TABLE rota_principals (
                name TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                scopes TEXT NOT NULL,
                roles TEXT NOT NULL,
                disabled INTEGER NOT NULL DEFAULT 0,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )""",
            """CREATE TABLE rota_api_tokens (
                id TEXT PRIMARY KEY,
                principal TEXT NOT NULL,
                token_hash TEXT NOT NULL UNIQUE,
                created_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION,
                revoked_at DOUBLE PRECISION
            )""",
            """CREATE TABLE rota_secrets (
                name TEXT PRIMARY KEY,
                ciphertext TEXT NOT NULL,
                grants TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )""",
            """CREATE TABLE rota_audit (
                seq BIGINT PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                at DOUBLE PRECISION NOT NULL,
                actor TEXT NOT NULL,
                actor_kind TEXT NOT NULL,
                action TEXT NOT NULL,
                subject TEXT,
                run_id TEXT,
                detail TEXT NOT NULL,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL
            )""",
            "CREATE INDEX rota_audit_actor ON rota_audit (actor, at)",
            "CREATE INDEX rota_audit_action ON rota_audit (action, at)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        5,
        "durable waits: sleeps and waits for events (approvals later)",
        (
            # One row per topic a wait listens on (an event name as "event:NAME"; "" when it
            # waits for time only). Rows change only under their run's row lock.
            """CREATE TABLE rota_waits (
                run_id TEXT NOT NULL REFERENCES rota_runs (id) ON DELETE CASCADE,
                step_key TEXT NOT NULL,
                topic TEXT NOT NULL,
                kind TEXT NOT NULL,
                step_name TEXT NOT NULL,
                seq INTEGER NOT NULL,
                detail TEXT NOT NULL,
                since DOUBLE PRECISION,
                deadline DOUBLE PRECISION,
                status TEXT NOT NULL,
                event_id TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                resolved_at DOUBLE PRECISION,
                PRIMARY KEY (run_id, step_key, topic)
            )""",
            "CREATE INDEX rota_waits_topic ON rota_waits (topic) WHERE status = 'waiting'",
            "CREATE INDEX rota_waits_deadline ON rota_waits (deadline) WHERE status = 'waiting'",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        6,
        "metering: model usage per call, agent sessions, shared budget ledger",
        (
            # One row per model call, keyed by its step: a step re-executed after a crash
            # replaces its row instead of adding one. Cost is in picodollars (USD x 1e12):
            # an integer, so sums are exact in SQL on both databases (exact for any rate
            # with up to six decimals per million tokens).
            """CREATE TABLE rota_usage (
                run_id TEXT NOT NULL,
                step_key TEXT NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                name TEXT NOT NULL,
                agent TEXT NOT NULL,
                principal TEXT,
                trigger TEXT,
                provider TEXT NOT NULL,
                model TEXT NOT NULL,
                input_tokens BIGINT NOT NULL,
                output_tokens BIGINT NOT NULL,
                cache_write_tokens BIGINT NOT NULL,
                cache_read_tokens BIGINT NOT NULL,
                reasoning_tokens BIGINT NOT NULL,
                requests INTEGER NOT NULL,
                cost_pusd BIGINT NOT NULL,
                price TEXT NOT NULL,
                simulated INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (run_id, step_key)
            )""",
            "CREATE INDEX rota_usage_at ON rota_usage (at)",
            "CREATE INDEX rota_usage_agent ON rota_usage (agent, at)",
            "CREATE INDEX rota_usage_name ON rota_usage (name, at)",
            "CREATE INDEX rota_usage_principal ON rota_usage (principal, at)",
            # Agent session time per execution of an agent loop (excluding parked waits:
            # a parked run is not executing); tool_calls is what that execution saw.
            """CREATE TABLE rota_agent_sessions (
                run_id TEXT NOT NULL,
                agent_key TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                agent TEXT NOT NULL,
                started_at DOUBLE PRECISION NOT NULL,
                seconds DOUBLE PRECISION NOT NULL,
                tool_calls INTEGER NOT NULL,
                PRIMARY KEY (run_id, agent_key, attempt)
            )""",
            # Shared budgets: one row per (budget, period) to lock while reserving, and the
            # holds of calls in flight (worst case), each expiring so that a crashed run's
            # hold cannot block the budget for ever. Spent money is read from rota_usage.
            """CREATE TABLE rota_budgets (
                key TEXT NOT NULL,
                period TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (key, period)
            )""",
            """CREATE TABLE rota_budget_holds (
                run_id TEXT NOT NULL,
                step_key TEXT NOT NULL,
                key TEXT NOT NULL,
                period TEXT NOT NULL,
                cost_pusd BIGINT NOT NULL,
                tokens BIGINT NOT NULL,
                requests INTEGER NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (run_id, step_key, key)
            )""",
            "CREATE INDEX rota_budget_holds_key ON rota_budget_holds (key, period)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        7,
        "escalation: children of a run, shadow comparisons, the agent decision cache",
        (
            "CREATE INDEX rota_runs_parent ON rota_runs (parent_id) WHERE parent_id IS NOT NULL",
            """CREATE TABLE rota_shadow (
                run_id TEXT PRIMARY KEY,
                parent_id TEXT NOT NULL,
                name TEXT NOT NULL,
                agent TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                agreed INTEGER,
                fields TEXT NOT NULL,
                job_result TEXT,
                agent_output TEXT,
                tokens BIGINT NOT NULL,
                error TEXT
            )""",
            "CREATE INDEX rota_shadow_name ON rota_shadow (name, created_at)",
            # Decisions of agents with cache=True, by a hash of their normalised inputs.
            """CREATE TABLE rota_agent_cache (
                key TEXT PRIMARY KEY,
                agent TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL,
                run_id TEXT,
                text TEXT NOT NULL,
                output TEXT
            )""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        8,
        "approvals: human decisions that durable waits of kind 'approval' wait for",
        (
            # One row per request. Its wait is the rota_waits row (run_id, step_key); both
            # change only under the run's row lock. status: pending, approved, rejected,
            # timed_out (the deadline passed: on_timeout applied) or expired (the run stopped
            # waiting without a decision, e.g. it was cancelled).
            """CREATE TABLE rota_approvals (
                id TEXT PRIMARY KEY,
                run_id TEXT NOT NULL REFERENCES rota_runs (id) ON DELETE CASCADE,
                step_key TEXT NOT NULL,
                run_name TEXT NOT NULL,
                principal TEXT,
                question TEXT NOT NULL,
                context TEXT NOT NULL,
                approvers TEXT NOT NULL,
                on_timeout TEXT NOT NULL,
                status TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                deadline DOUBLE PRECISION,
                decided_by TEXT,
                decided_at DOUBLE PRECISION,
                comment TEXT
            )""",
            # A step waits for one request at a time; decided ones stay as history.
            """CREATE UNIQUE INDEX rota_approvals_open ON rota_approvals (run_id, step_key)
                WHERE status = 'pending'""",
            # Lookups by step compare status to a parameter: the partial index cannot serve
            # PostgreSQL's generic plans for them (see the note in storage/runs.py).
            "CREATE INDEX rota_approvals_step ON rota_approvals (run_id, step_key)",
            "CREATE INDEX rota_approvals_status ON rota_approvals (status, created_at)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        9,
        "audit: on whose behalf each record's actor acted",
        (
            # NULL in the records written before: they are hashed without it (storage/audit.py).
            "ALTER TABLE rota_audit ADD COLUMN on_behalf_of TEXT",
            "CREATE INDEX rota_audit_on_behalf_of ON rota_audit (on_behalf_of, at)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        10,
        "compute time: how long run bodies executed, summed over their executions",
        (
            # NULL until an execution is measured (runs recorded before this version: cost
            # reports estimate theirs from wall time). compute_token is the lease token of
            # the newest execution counted: a write retried after a lost commit
            # acknowledgement is not counted twice.
            "ALTER TABLE rota_runs ADD COLUMN compute_s DOUBLE PRECISION",
            "ALTER TABLE rota_runs ADD COLUMN compute_token INTEGER",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        11,
        "tracing: the W3C trace context a run continues (rota.observability)",
        (
            # The traceparent of the span that caused the run (a webhook's, the run that
            # escalated to it, ...); NULL when nothing was traced. Workers continue it, so
            # one trace covers a run's whole chain across processes.
            "ALTER TABLE rota_runs ADD COLUMN trace_context TEXT",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        12,
        "alerts: one row per (alert key, sink) with its delivery state; the watchdog's marks",
        (
            # key is deterministic (rota.alerts): many workers find the same condition, the
            # first insert wins. state: pending, delivered or failed (retries exhausted).
            """CREATE TABLE rota_alerts (
                id TEXT PRIMARY KEY,
                key TEXT NOT NULL,
                sink TEXT NOT NULL,
                kind TEXT NOT NULL,
                subject TEXT NOT NULL,
                text TEXT NOT NULL,
                detail TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                delivered_at DOUBLE PRECISION,
                run_id TEXT
            )""",
            "CREATE UNIQUE INDEX rota_alerts_key ON rota_alerts (key, sink)",
            "CREATE INDEX rota_alerts_created ON rota_alerts (created_at)",
            # When the watchdog first watched something (a schedule, the failure sweep).
            """CREATE TABLE rota_alert_marks (
                key TEXT PRIMARY KEY,
                at DOUBLE PRECISION NOT NULL
            )""",
            # The failure sweep reads recently failed runs by when they ended.
            """CREATE INDEX rota_runs_failed ON rota_runs (finished_at)
                WHERE state = 'FAILED'""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        13,
        "the HTTP API: tokens that may fire one job; run changes read by the live stream",
        (
            # The one job a token may fire (POST /api/jobs/{fire}/runs) and nothing else;
            # NULL: the token may do what its principal may (identity/tokens.py).
            "ALTER TABLE rota_api_tokens ADD COLUMN fire TEXT",
            # GET /api/stream polls for runs started or finished since its cursor.
            "CREATE INDEX rota_runs_started ON rota_runs (started_at)",
            "CREATE INDEX rota_runs_finished ON rota_runs (finished_at)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        14,
        "GET /api/runs?error=: a trigram index on the error text (PostgreSQL, when allowed)",
        (),  # SQLite keeps its scan: LIKE '%text%' has no index there
        postgresql_optional=(
            "CREATE EXTENSION IF NOT EXISTS pg_trgm",
            # The extension may live in a schema that is not on search_path (installed by
            # another schema's rota), so its operator class is named by where it is. The
            # expression is exactly the one list_runs filters on.
            """DO $$
            DECLARE ops text;
            BEGIN
                SELECT quote_ident(n.nspname) || '.gin_trgm_ops' INTO STRICT ops
                FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
                WHERE e.extname = 'pg_trgm';
                EXECUTE 'CREATE INDEX rota_runs_error_trgm ON rota_runs '
                    || 'USING gin (LOWER(error) ' || ops || ')';
            END $$""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        15,
        "routine run caps: runs dropped or deferred at enqueue, each with its reason",
        (
            # storage/capped.py says why this is a table of its own, not a run state.
            """CREATE TABLE rota_capped_runs (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                principal TEXT,
                trigger TEXT NOT NULL,
                outcome TEXT NOT NULL,
                reason TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                deferred_to DOUBLE PRECISION,
                payload TEXT
            )""",
            "CREATE INDEX rota_capped_runs_created ON rota_capped_runs (created_at)",
            # A cap counts the runs due in its window, per routine and per principal.
            "CREATE INDEX rota_runs_name_due ON rota_runs (name, run_after)",
            "CREATE INDEX rota_runs_principal_due ON rota_runs (principal, run_after)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        16,
        "retention: daily cost roll-ups and billed prices of pruned runs (storage/retention.py)",
        (
            # What `rota db prune` keeps of the runs it deletes, so that cost reports of a
            # pruned period add up to what they did before. One row per (UTC day the run
            # started, run name, cost kind, principal, trigger, agent, model); '' stands for
            # none. The row with model '' counts the runs and their compute and session time;
            # each other row holds one model's tokens. Seconds are integer microseconds so
            # that sums are exact.
            """CREATE TABLE rota_cost_rollup (
                day TEXT NOT NULL,
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                principal TEXT NOT NULL,
                trigger TEXT NOT NULL,
                agent TEXT NOT NULL,
                model TEXT NOT NULL,
                runs BIGINT NOT NULL,
                compute_us BIGINT NOT NULL,
                session_us BIGINT NOT NULL,
                tool_calls BIGINT NOT NULL,
                input_tokens BIGINT NOT NULL,
                output_tokens BIGINT NOT NULL,
                cache_write_tokens BIGINT NOT NULL,
                cache_read_tokens BIGINT NOT NULL,
                reasoning_tokens BIGINT NOT NULL,
                requests BIGINT NOT NULL,
                PRIMARY KEY (day, name, kind, principal, trigger, agent, model)
            )""",
            # The prices pruned calls were billed at, per day: a model with no list price (a
            # scripted one, or one priced with price=) is priced from these in later reports.
            # (Pruning finds old runs on rota_runs_finished, of version 13: no new index on
            # the hot runs table, whose every index costs each run's updates.)
            """CREATE TABLE rota_cost_prices (
                model TEXT NOT NULL,
                price TEXT NOT NULL,
                day TEXT NOT NULL,
                first_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (model, price, day)
            )""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        17,
        "rota_runs: the start and end indexes hold started and ended runs only",
        (
            # Every query on these columns bounds them (`>= :since`, `< :cutoff`), which
            # implies NOT NULL, so the planner still uses them (the live stream, history,
            # pruning, the failure sweep). A new run has neither time and a claimed one has
            # no end yet: with the NULLs left out, an enqueue writes two index entries less
            # per run and a claim one less (`run_many` of 1,000 runs: 35.8 against 38.2 ms,
            # docs/benchmarks.md, issue 18).
            "DROP INDEX rota_runs_started",
            "CREATE INDEX rota_runs_started ON rota_runs (started_at) WHERE started_at IS NOT NULL",
            "DROP INDEX rota_runs_finished",
            """CREATE INDEX rota_runs_finished ON rota_runs (finished_at)
                WHERE finished_at IS NOT NULL""",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version

META_TABLE = """CREATE TABLE IF NOT EXISTS rota_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
)"""
