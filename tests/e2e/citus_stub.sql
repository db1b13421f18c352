-- Stand-ins for Citus' create_reference_table and create_distributed_table that
-- change nothing but record each call and refuse what Citus refuses (for
-- tests/e2e/citus_ddl.rs; Citus itself is not installed here):
--   - a table is registered once, and never a partition (distributing the
--     parent covers them);
--   - a distributed table's distribution column is a column of it, and is a
--     key column of every primary key and unique index;
--   - a distributed table references only reference tables, itself, or a
--     distributed table of its co-location group through the distribution
--     columns of both;
--   - a reference table references only reference tables;
--   - a referenced table is registered before the table referencing it.
-- citus_stub.uncovered() lists the tables registered as neither.

CREATE SCHEMA citus_stub;

CREATE TABLE citus_stub.tables (
    rel         regclass PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('distributed', 'reference')),
    dist_column smallint,
    colocation  regclass
);

-- Refuses a second registration or a partition.
CREATE FUNCTION citus_stub.check_new(t regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM citus_stub.tables WHERE rel = t) THEN
        RAISE EXCEPTION 'table % is already distributed', t;
    END IF;
    IF (SELECT relispartition FROM pg_class WHERE oid = t) THEN
        RAISE EXCEPTION 'table % is a partition: distribute its parent', t;
    END IF;
END
$$;

CREATE FUNCTION create_reference_table(table_name regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    fk record;
BEGIN
    PERFORM citus_stub.check_new(table_name);
    FOR fk IN
        SELECT c.conname, c.confrelid::regclass AS target, t.kind
        FROM pg_constraint c
        LEFT JOIN citus_stub.tables t ON t.rel = c.confrelid
        WHERE c.conrelid = table_name AND c.contype = 'f' AND c.confrelid <> c.conrelid
    LOOP
        IF fk.kind IS DISTINCT FROM 'reference' THEN
            RAISE EXCEPTION 'reference table % references % (%), which is not a reference table',
                table_name, fk.target, fk.conname;
        END IF;
    END LOOP;
    INSERT INTO citus_stub.tables (rel, kind) VALUES (table_name, 'reference');
END
$$;

CREATE FUNCTION create_distributed_table(
    table_name regclass,
    distribution_column text,
    colocate_with text DEFAULT 'default'
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    col smallint;
    grp regclass;
    idx record;
    fk record;
BEGIN
    PERFORM citus_stub.check_new(table_name);
    SELECT attnum INTO col FROM pg_attribute
    WHERE attrelid = table_name AND attname = distribution_column AND NOT attisdropped;
    IF col IS NULL THEN
        RAISE EXCEPTION 'column % of % does not exist', distribution_column, table_name;
    END IF;
    FOR idx IN
        SELECT i.indexrelid::regclass AS name
        FROM pg_index i
        WHERE i.indrelid = table_name AND i.indisunique
          AND NOT (col = ANY (i.indkey::smallint[]))
    LOOP
        RAISE EXCEPTION 'cannot distribute %: unique index % does not include the distribution column %',
            table_name, idx.name, distribution_column;
    END LOOP;
    IF colocate_with IN ('default', 'none') THEN
        grp := table_name;
    ELSE
        SELECT colocation INTO grp FROM citus_stub.tables
        WHERE rel = colocate_with::regclass AND kind = 'distributed';
        IF grp IS NULL THEN
            RAISE EXCEPTION 'cannot colocate % with %: not a distributed table', table_name, colocate_with;
        END IF;
    END IF;
    FOR fk IN
        SELECT c.conname, c.confrelid::regclass AS target, c.conkey, c.confkey,
               t.kind, t.dist_column, t.colocation
        FROM pg_constraint c
        LEFT JOIN citus_stub.tables t ON t.rel = c.confrelid
        WHERE c.conrelid = table_name AND c.contype = 'f'
    LOOP
        IF fk.target = table_name THEN
            CONTINUE;
        ELSIF fk.kind = 'reference' THEN
            CONTINUE;
        ELSIF fk.kind IS NULL THEN
            RAISE EXCEPTION '% references %, which is neither distributed nor a reference table (yet)',
                table_name, fk.target;
        ELSIF fk.colocation <> grp THEN
            RAISE EXCEPTION '% references %, which is not in its co-location group', table_name, fk.target;
        ELSIF NOT EXISTS (
            SELECT 1 FROM unnest(fk.conkey, fk.confkey) AS k(mine, theirs)
            WHERE k.mine = col AND k.theirs = fk.dist_column
        ) THEN
            RAISE EXCEPTION 'foreign key % of % does not pair the distribution columns', fk.conname, table_name;
        END IF;
    END LOOP;
    INSERT INTO citus_stub.tables VALUES (table_name, 'distributed', col, grp);
END
$$;

CREATE FUNCTION citus_stub.uncovered() RETURNS SETOF text
LANGUAGE sql AS $$
    SELECT c.relname::text
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND NOT EXISTS (SELECT 1 FROM citus_stub.tables t WHERE t.rel = c.oid)
      AND c.relname <> 'refinery_schema_history'
    ORDER BY 1
$$;
