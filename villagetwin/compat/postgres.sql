-- Plain PostgreSQL (14 or newer) in place of TimescaleDB: the few TimescaleDB functions the
-- migrations call, in their own schema, and the partition upkeep TimescaleDB does by itself.
-- Installed by the migrator (villagetwin/migrate.py) before any migration, only on a database
-- without the timescaledb extension; idempotent. See DEVELOPERS.md, "Plain PostgreSQL".
--
-- A hypertable becomes a table declaratively partitioned by range of its time column, one
-- partition per interval (aligned to UTC like TimescaleDB's chunks), plus a default partition
-- that takes rows of days without a partition yet. Unique keys must hold the time column on
-- both engines, so events_once (event_id, ts) keeps its meaning.

CREATE SCHEMA IF NOT EXISTS vt_compat;

CREATE TABLE IF NOT EXISTS vt_compat.hypertables (
    relation    regclass PRIMARY KEY,
    time_column name NOT NULL,
    step        interval NOT NULL
);

-- TimescaleDB: by_range(column_name, partition_interval) -> dimension info.
CREATE OR REPLACE FUNCTION vt_compat.by_range(column_name name, partition_interval interval)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('column', column_name, 'interval', partition_interval)
$$;

-- Creates partitions covering [from_ts, to_ts) that do not exist yet; rows of those ranges
-- that wait in the default partition move into them. Returns the partitions created.
-- SECURITY DEFINER: the ingester's role may keep partitions ahead without owning the table.
CREATE OR REPLACE FUNCTION vt_compat.ensure_partitions(
    relation regclass, from_ts timestamptz, to_ts timestamptz
) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    h vt_compat.hypertables;
    start timestamptz;
    part text;
    schema_name name;
    table_name name;
    moved bigint;
BEGIN
    SELECT * INTO h FROM vt_compat.hypertables WHERE hypertables.relation = ensure_partitions.relation;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'vt_compat.ensure_partitions: % is not a partitioned hypertable', relation;
    END IF;
    SELECT n.nspname, c.relname INTO schema_name, table_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = relation;
    FOR start IN
        SELECT generate_series(date_bin(h.step, from_ts, timestamptz '2000-01-01 00:00+00'),
                               to_ts - interval '1 microsecond', h.step)
    LOOP
        part := table_name || '_p' || to_char(start AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MISS');
        CONTINUE WHEN to_regclass(format('%I.%I', schema_name, part)) IS NOT NULL;
        -- Rows of this range in the default partition would make CREATE ... PARTITION OF fail:
        -- they go out first and come back through the parent, into the new partition.
        EXECUTE format('CREATE TEMP TABLE vt_moving (LIKE %s) ON COMMIT DROP', relation);
        EXECUTE format(
            'WITH gone AS (DELETE FROM %I.%I WHERE %I >= $1 AND %I < $2 RETURNING *)'
            ' INSERT INTO vt_moving SELECT * FROM gone',
            schema_name, table_name || '_default', h.time_column, h.time_column)
            USING start, start + h.step;
        GET DIAGNOSTICS moved = ROW_COUNT;
        EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                       schema_name, part, relation, start, start + h.step);
        IF moved > 0 THEN
            EXECUTE format('INSERT INTO %s SELECT * FROM vt_moving', relation);
        END IF;
        DROP TABLE vt_moving;
        RETURN NEXT part;
    END LOOP;
END
$$;

-- Drops the partitions whose whole range is older than older_than (TimescaleDB's drop_chunks),
-- returning their names. Rows of the default partition are left to delete_before().
CREATE OR REPLACE FUNCTION vt_compat.drop_partitions(relation regclass, older_than timestamptz)
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    part record;
BEGIN
    FOR part IN
        SELECT c.oid::regclass AS name,
               substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz
                   AS upper_bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = relation AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
        ORDER BY 2
    LOOP
        EXIT WHEN part.upper_bound > older_than;
        EXECUTE format('DROP TABLE %s', part.name);
        RETURN NEXT part.name::text;
    END LOOP;
END
$$;

-- Deletes at most batch rows older than older_than from the default partition; the caller
-- commits and calls again while it returns batch.
CREATE OR REPLACE FUNCTION vt_compat.delete_before(
    relation regclass, older_than timestamptz, batch integer
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    h vt_compat.hypertables;
    target text;
    removed bigint;
BEGIN
    SELECT * INTO h FROM vt_compat.hypertables WHERE hypertables.relation = delete_before.relation;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'vt_compat.delete_before: % is not a partitioned hypertable', relation;
    END IF;
    SELECT format('%I.%I', n.nspname, c.relname || '_default') INTO target
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = relation;
    EXECUTE format(
        'DELETE FROM %s WHERE ctid = ANY (ARRAY(SELECT ctid FROM %s WHERE %I < $1 LIMIT $2))',
        target, target, h.time_column) USING older_than, batch;
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END
$$;

-- TimescaleDB: create_hypertable(relation, dimension). Called right after CREATE TABLE, on an
-- empty table: the table is recreated as a partitioned one with the same columns, defaults,
-- checks and named constraints (ON CONFLICT ON CONSTRAINT events_once must keep working),
-- plus TimescaleDB's default index on (time DESC), a default partition and the partitions
-- around now.
CREATE OR REPLACE FUNCTION vt_compat.create_hypertable(relation regclass, dimension jsonb)
RETURNS TABLE (hypertable_id integer, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    col name := dimension ->> 'column';
    step interval := (dimension ->> 'interval')::interval;
    schema_name name;
    table_name name;
    old_name text;
    con record;
    constraints text[] := '{}';
    names text[] := '{}';
    has_rows boolean;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = relation) THEN
        RETURN QUERY SELECT 0, false;
        RETURN;
    END IF;
    SELECT n.nspname, c.relname INTO schema_name, table_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = relation;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', relation) INTO has_rows;
    IF has_rows THEN
        RAISE EXCEPTION 'vt_compat.create_hypertable: % has rows; only an empty table', relation;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = relation AND NOT EXISTS (
                   SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)) THEN
        RAISE EXCEPTION 'vt_compat.create_hypertable: create the indexes of % after it', relation;
    END IF;
    FOR con IN
        SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
        WHERE conrelid = relation AND contype IN ('p', 'u', 'x', 'f') ORDER BY conname
    LOOP
        names := names || con.conname::text;
        constraints := constraints || con.def;
    END LOOP;
    old_name := table_name || '_vt_unpartitioned';
    EXECUTE format('ALTER TABLE %I.%I RENAME TO %I', schema_name, table_name, old_name);
    EXECUTE format(
        'CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING GENERATED'
        ' INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE (%I)',
        schema_name, table_name, schema_name, old_name, col);
    EXECUTE format('DROP TABLE %I.%I', schema_name, old_name);
    FOR i IN 1 .. coalesce(array_length(names, 1), 0) LOOP
        EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s',
                       schema_name, table_name, names[i], constraints[i]);
    END LOOP;
    EXECUTE format('CREATE INDEX %I ON %I.%I (%I DESC)',
                   table_name || '_' || col || '_idx', schema_name, table_name, col);
    EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.%I DEFAULT',
                   schema_name, table_name || '_default', schema_name, table_name);
    relation := format('%I.%I', schema_name, table_name)::regclass;
    INSERT INTO vt_compat.hypertables VALUES (relation, col, step)
        ON CONFLICT ON CONSTRAINT hypertables_pkey DO UPDATE SET time_column = EXCLUDED.time_column,
                                             step = EXCLUDED.step;
    PERFORM vt_compat.ensure_partitions(relation, now() - step, now() + 2 * step);
    RETURN QUERY SELECT (SELECT count(*)::integer FROM vt_compat.hypertables), true;
END
$$;

-- Only the roles the migrations grant them to (the ingester's) may keep or drop partitions.
REVOKE ALL ON FUNCTION vt_compat.ensure_partitions(regclass, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION vt_compat.drop_partitions(regclass, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION vt_compat.delete_before(regclass, timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION vt_compat.create_hypertable(regclass, jsonb) FROM PUBLIC;
