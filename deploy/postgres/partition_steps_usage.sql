-- Opt-in: time-partition rota's two largest tables, rota_steps and rota_usage, by month.
--
-- Run once, on a database at rota schema version 16 or later, in the schema rota uses
-- (search_path), with rota's workers stopped:
--     psql "$DATABASE_URL" --single-transaction -v ON_ERROR_STOP=1 \
--         -f deploy/postgres/partition_steps_usage.sql
-- then create partitions ahead every month (a cron line):
--     psql "$DATABASE_URL" -c "SELECT rota_add_partitions(now(), 3)"
-- Rows of a month with no partition land in the DEFAULT partition, so nothing fails if the
-- cron line is late; they stay correct, only less cheap to drop.
--
-- Why by run id: rota's ids are UUIDv7-shaped (48 bits of milliseconds first, rota.ids), so
-- a range of ids is a range of creation times, and the partition key is the first column of
-- both tables' primary keys (PostgreSQL requires it in every unique index of a partitioned
-- table). ON CONFLICT (run_id, step_key), which rota's checkpoints and metering use, keeps
-- working. The key compares in the "C" collation: byte order is time order for these ids.
--
-- Not partitioned, and why: rota_runs and rota_events hold unique indexes on
-- (name, idempotency_key) that rota's enqueues depend on; a partitioned table can only have
-- unique indexes that include the partition key, so deduplication across partitions would be
-- lost. See docs/scaling.md for the plan for them.
--
-- Retention with partitions: `rota db prune` deletes a month's rows (rolling usage up
-- first); a partition left empty can then be dropped at no cost:
--     DROP TABLE rota_steps_p2026_01, rota_usage_p2026_01;

CREATE OR REPLACE FUNCTION rota_id_bound(at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    -- The smallest rota id made at `at`: its 48 bits of milliseconds as hex, dash-grouped
    -- like the ids ("xxxxxxxx-xxxx"), compared in "C" order.
    SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4)
    FROM (SELECT lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') AS h) x
$$;

CREATE OR REPLACE FUNCTION rota_add_partitions(start timestamptz, months int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    first date := date_trunc('month', start AT TIME ZONE 'UTC')::date;
    m date;
    made int := 0;
    t text;
BEGIN
    FOR i IN 0..months LOOP
        m := (first + make_interval(months => i))::date;
        FOREACH t IN ARRAY ARRAY['rota_steps', 'rota_usage'] LOOP
            IF to_regclass(format('%s_p%s', t, to_char(m, 'YYYY_MM'))) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                    format('%s_p%s', t, to_char(m, 'YYYY_MM')), t,
                    rota_id_bound(m::timestamp AT TIME ZONE 'UTC'),
                    rota_id_bound((m + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
                made := made + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN made;
END $$;

ALTER TABLE rota_steps RENAME TO rota_steps_unpartitioned;
ALTER TABLE rota_steps_unpartitioned RENAME CONSTRAINT rota_steps_pkey TO rota_steps_old_pkey;
CREATE TABLE rota_steps (
    run_id TEXT COLLATE "C" NOT NULL REFERENCES rota_runs (id) ON DELETE CASCADE,
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
) PARTITION BY RANGE (run_id);
CREATE TABLE rota_steps_default PARTITION OF rota_steps DEFAULT;

ALTER TABLE rota_usage RENAME TO rota_usage_unpartitioned;
ALTER TABLE rota_usage_unpartitioned RENAME CONSTRAINT rota_usage_pkey TO rota_usage_old_pkey;
ALTER INDEX rota_usage_at RENAME TO rota_usage_old_at;
ALTER INDEX rota_usage_agent RENAME TO rota_usage_old_agent;
ALTER INDEX rota_usage_name RENAME TO rota_usage_old_name;
ALTER INDEX rota_usage_principal RENAME TO rota_usage_old_principal;
CREATE TABLE rota_usage (
    run_id TEXT COLLATE "C" NOT NULL,
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
) PARTITION BY RANGE (run_id);
CREATE TABLE rota_usage_default PARTITION OF rota_usage DEFAULT;
CREATE INDEX rota_usage_at ON rota_usage (at);
CREATE INDEX rota_usage_agent ON rota_usage (agent, at);
CREATE INDEX rota_usage_name ON rota_usage (name, at);
CREATE INDEX rota_usage_principal ON rota_usage (principal, at);

-- Partitions from the month of the oldest run to three months ahead, then the rows.
SELECT rota_add_partitions(
    s,
    (12 * (extract(year FROM now()) - extract(year FROM s))
        + extract(month FROM now()) - extract(month FROM s))::int + 3)
FROM (SELECT COALESCE(to_timestamp(MIN(created_at)), now()) AS s FROM rota_runs) oldest;
INSERT INTO rota_steps SELECT * FROM rota_steps_unpartitioned;
INSERT INTO rota_usage SELECT * FROM rota_usage_unpartitioned;
DROP TABLE rota_steps_unpartitioned;
DROP TABLE rota_usage_unpartitioned;
