#!/usr/bin/env python3
"""The catalog queries that database tools send, and psql's meta-commands, against a real server.

    python tools.py PORT_OR_DSN [--reference] [--only SUBSTRING] [--list] [--traceback]

Each check creates its own table t_<check name> (auction BIGINT, price BIGINT, bidder TEXT,
ts TIMESTAMP) and a materialized view t_<check name>_mv (auction BIGINT, n BIGINT) over it,
then sends a tool's queries verbatim and asserts what PostgreSQL answers:

- pgcli (dbcli/pgcli, pgcli/pgexecute.py, the queries of its completion refresh): search path,
  schemata, tables, views, columns, functions, datatypes, foreign keys, databases. pgcli runs
  them through psycopg 3 with autocommit and inlines the relkind list with ClientCursor.mogrify;
  so do these checks.
- Grafana's PostgreSQL data source (grafana/grafana,
  public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts): version,
  TimescaleDB probe, schemas, tables, columns of a table with their data types.
- Metabase's sync (metabase/metabase, src/metabase/driver/postgres.clj: get-tables-sql,
  current-user-table-privileges, describe-fields-sql, describe-fks-sql, db-default-timezone;
  schemas through pgjdbc's DatabaseMetaData.getSchemas). The HoneySQL forms are written out as
  the SQL HoneySQL renders (quoted identifiers), with the same placeholders, bound server-side as
  pgjdbc does.
- psql (the real binary): \\dt, \\d t, \\d+ t, \\dv, \\dm, \\df, \\dn, \\l.

Driven by tests/clients.rs.
"""

import os
import shutil
import subprocess

import psycopg

from harness import attempt, check, eq, ok, run

# --- helpers --------------------------------------------------------------------------------------


def conn(ctx):
    return psycopg.connect(ctx.dsn, autocommit=True)


def fetch(c, what, sql, params=None):
    """The rows of `sql`, or None after recording its error: a check of several queries reports
    each failing one."""
    return attempt(what, lambda: c.execute(sql, params).fetchall())


def setup(ctx):
    """The check's table (with rows) and its materialized view: (table, view)."""
    t = ctx.fresh(mv=True)
    return t, t + "_mv"


T_COLUMNS = [("auction", "bigint"), ("price", "bigint"), ("bidder", "text"),
             ("ts", "timestamp without time zone")]

# --- pgcli ----------------------------------------------------------------------------------------

PGCLI_SEARCH_PATH = """
        SELECT * FROM unnest(current_schemas(true))"""

PGCLI_SCHEMATA = """
        SELECT  nspname
        FROM    pg_catalog.pg_namespace
        ORDER BY 1 """

PGCLI_TABLES = """
        SELECT  n.nspname schema_name,
                c.relname table_name
        FROM    pg_catalog.pg_class c
                LEFT JOIN pg_catalog.pg_namespace n
                    ON n.oid = c.relnamespace
        WHERE   c.relkind = ANY(%s)
        ORDER BY 1,2;"""

PGCLI_COLUMNS = """
                SELECT  nsp.nspname schema_name,
                        cls.relname table_name,
                        att.attname column_name,
                        att.atttypid::regtype::text type_name,
                        att.atthasdef AS has_default,
                        pg_catalog.pg_get_expr(def.adbin, def.adrelid, true) as default
                FROM    pg_catalog.pg_attribute att
                        INNER JOIN pg_catalog.pg_class cls
                            ON att.attrelid = cls.oid
                        INNER JOIN pg_catalog.pg_namespace nsp
                            ON cls.relnamespace = nsp.oid
                        LEFT OUTER JOIN pg_attrdef def
                            ON def.adrelid = att.attrelid
                            AND def.adnum = att.attnum
                WHERE   cls.relkind = ANY(%s)
                        AND NOT att.attisdropped
                        AND att.attnum  > 0
                ORDER BY 1, 2, att.attnum"""

PGCLI_FUNCTIONS = """
                SELECT n.nspname schema_name,
                        p.proname func_name,
                        p.proargnames,
                        COALESCE(proallargtypes::regtype[], proargtypes::regtype[])::text[],
                        p.proargmodes,
                        prorettype::regtype::text return_type,
                        p.prokind = 'a' is_aggregate,
                        p.prokind = 'w' is_window,
                        p.proretset is_set_returning,
                        d.deptype = 'e' is_extension,
                        pg_get_expr(proargdefaults, 0) AS arg_defaults
                FROM pg_catalog.pg_proc p
                        INNER JOIN pg_catalog.pg_namespace n
                            ON n.oid = p.pronamespace
                LEFT JOIN pg_depend d ON d.objid = p.oid and d.deptype = 'e'
                WHERE p.prorettype::regtype != 'trigger'::regtype
                ORDER BY 1, 2
                """

PGCLI_DATATYPES = """
                    SELECT n.nspname schema_name,
                           t.typname type_name
                    FROM   pg_catalog.pg_type t
                           INNER JOIN pg_catalog.pg_namespace n
                              ON n.oid = t.typnamespace
                    WHERE ( t.typrelid = 0  -- non-composite types
                            OR (  -- composite type, but not a table
                                  SELECT c.relkind = 'c'
                                  FROM pg_catalog.pg_class c
                                  WHERE c.oid = t.typrelid
                                )
                          )
                          AND NOT EXISTS( -- ignore array types
                                SELECT  1
                                FROM    pg_catalog.pg_type el
                                WHERE   el.oid = t.typelem AND el.typarray = t.oid
                              )
                          AND n.nspname <> 'pg_catalog'
                          AND n.nspname <> 'information_schema'
                    ORDER BY 1, 2;
                    """

PGCLI_FOREIGN_KEYS = """
                SELECT s_p.nspname AS parentschema,
                       t_p.relname AS parenttable,
                       unnest((
                        select
                            array_agg(attname ORDER BY i)
                        from
                            (select unnest(confkey) as attnum, generate_subscripts(confkey, 1) as i) x
                            JOIN pg_catalog.pg_attribute c USING(attnum)
                            WHERE c.attrelid = fk.confrelid
                        )) AS parentcolumn,
                       s_c.nspname AS childschema,
                       t_c.relname AS childtable,
                       unnest((
                        select
                            array_agg(attname ORDER BY i)
                        from
                            (select unnest(conkey) as attnum, generate_subscripts(conkey, 1) as i) x
                            JOIN pg_catalog.pg_attribute c USING(attnum)
                            WHERE c.attrelid = fk.conrelid
                        )) AS childcolumn
                FROM pg_catalog.pg_constraint fk
                JOIN pg_catalog.pg_class      t_p ON t_p.oid = fk.confrelid
                JOIN pg_catalog.pg_namespace  s_p ON s_p.oid = t_p.relnamespace
                JOIN pg_catalog.pg_class      t_c ON t_c.oid = fk.conrelid
                JOIN pg_catalog.pg_namespace  s_c ON s_c.oid = t_c.relnamespace
                WHERE fk.contype = 'f';
                """

PGCLI_DATABASES = """
        SELECT d.datname
        FROM pg_catalog.pg_database d
        ORDER BY 1"""


def pgcli_query(c, sql, kinds):
    """pgcli's `cur.mogrify(query, [kinds])`: the relkind list inlined client-side."""
    return psycopg.ClientCursor(c).mogrify(sql, [kinds])


@check
def pgcli_search_path(ctx):
    with conn(ctx) as c:
        path = [r[0] for r in c.execute(PGCLI_SEARCH_PATH).fetchall()]
    eq(path[:1], ["pg_catalog"], "first schema of current_schemas(true)")
    ok("public" in path, f"public not in {path}")


@check
def pgcli_schemata(ctx):
    with conn(ctx) as c:
        names = [r[0] for r in c.execute(PGCLI_SCHEMATA).fetchall()]
    for s in ["information_schema", "pg_catalog", "public"]:
        ok(s in names, f"{s} not in {names}")
    eq(names, sorted(names), "ORDER BY 1")


@check
def pgcli_tables(ctx):
    t, mv = setup(ctx)
    with conn(ctx) as c:
        tables = fetch(c, "tables query", pgcli_query(c, PGCLI_TABLES, ["r", "p", "f"]))
        views = fetch(c, "views query", pgcli_query(c, PGCLI_TABLES, ["v", "m"]))
    if tables is not None:
        ok(("public", t) in tables, f"('public', {t!r}) not among tables")
        ok(("public", mv) not in tables, "the materialized view among tables")
    if views is not None:
        ok(("public", mv) in views, f"('public', {mv!r}) not among views")
        ok(("public", t) not in views, "the table among views")


@check
def pgcli_columns(ctx):
    t, mv = setup(ctx)
    with conn(ctx) as c:
        tcols = fetch(c, "table columns query", pgcli_query(c, PGCLI_COLUMNS, ["r", "p", "f"]))
        vcols = fetch(c, "view columns query", pgcli_query(c, PGCLI_COLUMNS, ["v", "m"]))
    if tcols is not None:
        eq([r for r in tcols if r[:2] == ("public", t)],
           [("public", t, name, typ, False, None) for name, typ in T_COLUMNS], "table columns")
    if vcols is not None:
        eq([r for r in vcols if r[:2] == ("public", mv)],
           [("public", mv, "auction", "bigint", False, None),
            ("public", mv, "n", "bigint", False, None)], "materialized view columns")


@check
def pgcli_functions(ctx):
    with conn(ctx) as c:
        rows = c.execute(PGCLI_FUNCTIONS).fetchall()
    count = [r for r in rows if r[0] == "pg_catalog" and r[1] == "count"]
    ok(count, "pg_catalog.count not among the functions")
    ok(all(r[6] is True for r in count), f"count is not an aggregate: {count}")
    ok(("bigint",) in [(r[5],) for r in count], f"count's return type: {count}")
    lower = [r for r in rows if r[0] == "pg_catalog" and r[1] == "lower"]
    ok(lower and lower[0][3] == ["text"] and lower[0][5] == "text", f"lower(text): {lower}")


@check
def pgcli_datatypes(ctx):
    t, mv = setup(ctx)
    with conn(ctx) as c:
        rows = c.execute(PGCLI_DATATYPES).fetchall()
    names = [r[1] for r in rows]
    ok(all(r[0] not in ("pg_catalog", "information_schema") for r in rows),
       f"system schemas among user types: {rows}")
    # A table's row type is composite with relkind 'r': not a "datatype" to complete.
    ok(t not in names and mv not in names, f"a relation's row type among datatypes: {rows}")


@check
def pgcli_foreign_keys(ctx):
    setup(ctx)
    with conn(ctx) as c:
        eq(c.execute(PGCLI_FOREIGN_KEYS).fetchall(), [], "foreign keys")


@check
def pgcli_databases(ctx):
    with conn(ctx) as c:
        names = [r[0] for r in c.execute(PGCLI_DATABASES).fetchall()]
    ok(ctx.dbname in names, f"{ctx.dbname} not in {names}")


# --- Grafana --------------------------------------------------------------------------------------

GRAFANA_SCHEMA_CONSTRAINT = """
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )"""


def grafana_show_tables(schema=None):
    if schema:
        schema_part = "'" + schema.replace("'", "''") + "'"
        return f"""SELECT quote_ident(table_name) AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = {schema_part}
      ORDER BY 1"""
    return f"""SELECT
    CASE WHEN {GRAFANA_SCHEMA_CONSTRAINT}
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN {GRAFANA_SCHEMA_CONSTRAINT} THEN 0 ELSE 1 END, 1"""


def grafana_get_schema(table):
    table_part = "'" + table.replace("'", "''") + "'"
    return f"""SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident({table_part}),1) = 2
        THEN quote_ident(table_schema) = (parse_ident({table_part}))[1]
          AND quote_ident(table_name) = (parse_ident({table_part}))[2]
        ELSE quote_ident(table_name) = {table_part}
          AND {GRAFANA_SCHEMA_CONSTRAINT}
      END"""


GRAFANA_SHOW_SCHEMAS = """SELECT schema_name AS "name"
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema',
                              'pg_catalog',
                              'pg_toast',
                              '_timescaledb_cache',
                              '_timescaledb_catalog',
                              '_timescaledb_internal',
                              '_timescaledb_config',
                              'timescaledb_information',
                              'timescaledb_experimental')
    ORDER BY schema_name"""


@check
def grafana_version(ctx):
    with conn(ctx) as c:
        got = fetch(c, "version query",
                    "SELECT current_setting('server_version_num')::int/100 as version")
        if got is not None:
            eq(got, [(c.info.server_version // 100,)], "server_version_num / 100")
        got = fetch(c, "TimescaleDB probe",
                    "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        if got is not None:
            eq(got, [], "TimescaleDB probe")


@check
def grafana_schemas(ctx):
    with conn(ctx) as c:
        names = [r[0] for r in c.execute(GRAFANA_SHOW_SCHEMAS).fetchall()]
    ok("public" in names, f"public not in {names}")
    ok("pg_catalog" not in names and "information_schema" not in names, f"system schemas: {names}")


@check
def grafana_tables(ctx):
    t, mv = setup(ctx)
    with conn(ctx) as c:
        names = fetch(c, "tables query", grafana_show_tables())
        in_public = fetch(c, "tables of schema public query", grafana_show_tables("public"))
    if names is not None:
        names = [r[0] for r in names]
        # Tables of the search path come first and unqualified.
        ok(t in names, f"{t} not in {names}")
        ok(f"public.{t}" not in names, f"public.{t} qualified though public is on the search path")
    if in_public is not None:
        in_public = [r[0] for r in in_public]
        ok(t in in_public, f"{t} not in the tables of schema public {in_public}")
        eq(in_public, sorted(in_public), "ORDER BY 1")


@check
def grafana_columns(ctx):
    t, _ = setup(ctx)
    with conn(ctx) as c:
        got = fetch(c, "columns query", grafana_get_schema(t))
        qualified = fetch(c, "columns query, qualified name", grafana_get_schema(f"public.{t}"))
    if got is not None:
        eq(sorted(got), sorted(T_COLUMNS), "columns and data types")
    if qualified is not None:
        eq(sorted(qualified), sorted(T_COLUMNS), "columns of a schema-qualified table")


# --- Metabase -------------------------------------------------------------------------------------

PGJDBC_GET_SCHEMAS = (
    "SELECT nspname AS TABLE_SCHEM, NULL AS TABLE_CATALOG FROM pg_catalog.pg_namespace "
    " WHERE nspname <> 'pg_toast' AND (nspname !~ '^pg_temp_' "
    " OR nspname = (pg_catalog.current_schemas(true))[1]) AND (nspname !~ '^pg_toast_temp_' "
    " OR nspname = replace((pg_catalog.current_schemas(true))[1], 'pg_temp_', 'pg_toast_temp_')) "
    " ORDER BY TABLE_SCHEM"
)

METABASE_TABLES = (
    'SELECT "n"."nspname" AS "schema", "c"."relname" AS "name", '
    "CASE \"c\".\"relkind\" WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' "
    "WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' "
    'ELSE NULL END AS "type", "d"."description" AS "description", '
    '"stat"."n_live_tup" AS "estimated_row_count" '
    'FROM "pg_catalog"."pg_class" AS "c" '
    'INNER JOIN "pg_catalog"."pg_namespace" AS "n" ON "c"."relnamespace" = "n"."oid" '
    'LEFT JOIN "pg_catalog"."pg_description" AS "d" ON ("c"."oid" = "d"."objoid") '
    "AND (\"d\".\"objsubid\" = 0) AND (\"d\".\"classoid\" = 'pg_class'::regclass) "
    'LEFT JOIN "pg_stat_user_tables" AS "stat" ON ("n"."nspname" = "stat"."schemaname") '
    'AND ("c"."relname" = "stat"."relname") '
    'WHERE ("c"."relnamespace" = "n"."oid") AND ("n"."nspname" !~ %s) AND ("n"."nspname" <> %s) '
    "AND c.relkind in ('r', 'p', 'v', 'f', 'm') AND (\"n\".\"nspname\" IN (%s)) "
    'ORDER BY "type" ASC, "schema" ASC, "name" ASC'
)

METABASE_PRIVILEGES = "\n".join([
    "with table_privileges as (",
    " select",
    "   NULL as role,",
    "   t.schemaname as schema,",
    "   t.objectname as table,",
    "   pg_catalog.has_any_column_privilege(current_user, '\"' || replace(t.schemaname, '\"', "
    "'\"\"') || '\"' || '.' || '\"' || replace(t.objectname, '\"', '\"\"') || '\"',  'update') "
    "as update,",
    "   pg_catalog.has_any_column_privilege(current_user, '\"' || replace(t.schemaname, '\"', "
    "'\"\"') || '\"' || '.' || '\"' || replace(t.objectname, '\"', '\"\"') || '\"',  'select') "
    "as select,",
    "   pg_catalog.has_any_column_privilege(current_user, '\"' || replace(t.schemaname, '\"', "
    "'\"\"') || '\"' || '.' || '\"' || replace(t.objectname, '\"', '\"\"') || '\"',  'insert') "
    "as insert,",
    "   pg_catalog.has_table_privilege(     current_user, '\"' || replace(t.schemaname, '\"', "
    "'\"\"') || '\"' || '.' || '\"' || replace(t.objectname, '\"', '\"\"') || '\"',  'delete') "
    "as delete",
    " from (",
    "   select schemaname, tablename as objectname from pg_catalog.pg_tables",
    "   union",
    "   select schemaname, viewname as objectname from pg_catalog.pg_views",
    "   union",
    "   select schemaname, matviewname as objectname from pg_catalog.pg_matviews",
    " ) t",
    " where t.schemaname !~ '^pg_'",
    "   and t.schemaname <> 'information_schema'",
    "   and pg_catalog.has_schema_privilege(current_user, t.schemaname, 'usage')",
    ")",
    "select t.*",
    "from table_privileges t",
])

METABASE_FIELDS = (
    'SELECT "c"."column_name" AS "name", '
    "CASE WHEN \"c\".\"udt_schema\" IN ('public', 'pg_catalog') THEN FORMAT('%%s', \"c\".\"udt_name\") "
    "ELSE FORMAT('\"%%s\".\"%%s\"', \"c\".\"udt_schema\", \"c\".\"udt_name\") END AS \"database-type\", "
    '"c"."ordinal_position" - 1 AS "database-position", '
    '"c"."table_schema" AS "table-schema", "c"."table_name" AS "table-name", '
    '"pk"."column_name" IS NOT NULL AS "pk?", '
    "COL_DESCRIPTION(CAST(CAST(FORMAT('%%I.%%I', CAST(\"c\".\"table_schema\" AS TEXT), "
    'CAST("c"."table_name" AS TEXT)) AS REGCLASS) AS OID), "c"."ordinal_position") AS "field-comment", '
    "((\"column_default\" IS NULL) OR (LOWER(\"column_default\") = 'null')) AND (\"is_nullable\" = 'NO') "
    "AND NOT (((\"column_default\" IS NOT NULL) AND (\"column_default\" LIKE '%%nextval(%%')) "
    "OR (\"is_identity\" <> 'NO')) AS \"database-required\", "
    "((\"column_default\" IS NOT NULL) AND (\"column_default\" LIKE '%%nextval(%%')) "
    "OR (\"is_identity\" <> 'NO') AS \"database-is-auto-increment\" "
    'FROM "information_schema"."columns" AS "c" '
    'LEFT JOIN (SELECT "tc"."table_schema", "tc"."table_name", "kc"."column_name" '
    'FROM "information_schema"."table_constraints" AS "tc" '
    'INNER JOIN "information_schema"."key_column_usage" AS "kc" '
    'ON ("tc"."constraint_name" = "kc"."constraint_name") AND ("tc"."table_schema" = "kc"."table_schema") '
    'AND ("tc"."table_name" = "kc"."table_name") '
    "WHERE \"tc\".\"constraint_type\" = 'PRIMARY KEY') AS \"pk\" "
    'ON ("c"."table_schema" = "pk"."table_schema") AND ("c"."table_name" = "pk"."table_name") '
    'AND ("c"."column_name" = "pk"."column_name") '
    "WHERE c.table_schema !~ '^information_schema|catalog_history|pg_' "
    'AND ("c"."table_schema" IN (%s)) AND ("c"."table_name" IN (%s, %s)) '
    "UNION ALL "
    'SELECT "pa"."attname" AS "name", '
    "CASE WHEN \"ptn\".\"nspname\" IN ('public', 'pg_catalog') THEN FORMAT('%%s', \"pt\".\"typname\") "
    "ELSE FORMAT('\"%%s\".\"%%s\"', \"ptn\".\"nspname\", \"pt\".\"typname\") END AS \"database-type\", "
    '"pa"."attnum" - 1 AS "database-position", "pn"."nspname" AS "table-schema", '
    '"pc"."relname" AS "table-name", FALSE AS "pk?", NULL AS "field-comment", '
    'FALSE AS "database-required", FALSE AS "database-is-auto-increment" '
    'FROM "pg_catalog"."pg_class" AS "pc" '
    'INNER JOIN "pg_catalog"."pg_namespace" AS "pn" ON "pn"."oid" = "pc"."relnamespace" '
    'INNER JOIN "pg_catalog"."pg_attribute" AS "pa" ON "pa"."attrelid" = "pc"."oid" '
    'INNER JOIN "pg_catalog"."pg_type" AS "pt" ON "pt"."oid" = "pa"."atttypid" '
    'INNER JOIN "pg_catalog"."pg_namespace" AS "ptn" ON "ptn"."oid" = "pt"."typnamespace" '
    "WHERE (\"pc\".\"relkind\" = 'm') AND (\"pa\".\"attnum\" >= 1) "
    'AND ("pn"."nspname" IN (%s)) AND ("pc"."relname" IN (%s, %s)) '
    'ORDER BY "table-schema" ASC, "table-name" ASC, "database-position" ASC'
)

METABASE_FKS = (
    'SELECT "fk_ns"."nspname" AS "fk-table-schema", "fk_table"."relname" AS "fk-table-name", '
    '"fk_column"."attname" AS "fk-column-name", "pk_ns"."nspname" AS "pk-table-schema", '
    '"pk_table"."relname" AS "pk-table-name", "pk_column"."attname" AS "pk-column-name" '
    'FROM "pg_constraint" AS "c" '
    'INNER JOIN "pg_class" AS "fk_table" ON "c"."conrelid" = "fk_table"."oid" '
    'INNER JOIN "pg_namespace" AS "fk_ns" ON "c"."connamespace" = "fk_ns"."oid" '
    'INNER JOIN "pg_attribute" AS "fk_column" ON "c"."conrelid" = "fk_column"."attrelid" '
    'INNER JOIN "pg_class" AS "pk_table" ON "c"."confrelid" = "pk_table"."oid" '
    'INNER JOIN "pg_namespace" AS "pk_ns" ON "pk_table"."relnamespace" = "pk_ns"."oid" '
    'INNER JOIN "pg_attribute" AS "pk_column" ON "c"."confrelid" = "pk_column"."attrelid" '
    "WHERE fk_ns.nspname !~ '^information_schema|catalog_history|pg_' "
    "AND (\"c\".\"contype\" = 'f'::char) AND (\"fk_column\".\"attnum\" = ANY(c.conkey)) "
    'AND ("pk_column"."attnum" = ANY(c.confkey)) AND ("fk_table"."relname" IN (%s)) '
    'AND ("fk_ns"."nspname" IN (%s)) '
    'ORDER BY "fk-table-schema" ASC, "fk-table-name" ASC'
)


@check
def metabase_schemas(ctx):
    with conn(ctx) as c:
        rows = c.execute(PGJDBC_GET_SCHEMAS).fetchall()
    names = [r[0] for r in rows]
    ok("public" in names, f"public not in {names}")
    ok(all(r[1] is None for r in rows), "TABLE_CATALOG is NULL")
    eq(names, sorted(names), "ORDER BY TABLE_SCHEM")


@check
def metabase_tables(ctx):
    t, mv = setup(ctx)
    with conn(ctx) as c:
        rows = c.execute(METABASE_TABLES, ["^pg_", "information_schema", "public"]).fetchall()
    mine = [r[:4] for r in rows if r[1] in (t, mv)]
    eq(mine, [("public", mv, "MATERIALIZED VIEW", None), ("public", t, "TABLE", None)],
       "tables (schema, name, type, description), ORDER BY type")


@check
def metabase_privileges(ctx):
    t, mv = setup(ctx)
    with conn(ctx) as c:
        rows = c.execute(METABASE_PRIVILEGES).fetchall()
    mine = sorted(r for r in rows if r[1] == "public" and r[2] in (t, mv))
    # The connecting user created both relations.
    eq(mine, [(None, "public", t, True, True, True, True),
              (None, "public", mv, True, True, True, True)], "privileges of the current user")


@check
def metabase_fields(ctx):
    t, mv = setup(ctx)
    with conn(ctx) as c:
        rows = c.execute(METABASE_FIELDS, ["public", t, mv, "public", t, mv]).fetchall()
    want = [(name, typ, i, "public", t, False, None, False, False)
            for i, (name, typ) in enumerate(
                [("auction", "int8"), ("price", "int8"), ("bidder", "text"), ("ts", "timestamp")])]
    want += [(name, "int8", i, "public", mv, False, None, False, False)
             for i, name in enumerate(["auction", "n"])]
    eq(rows, want, "fields")


@check
def metabase_fks(ctx):
    t, _ = setup(ctx)
    with conn(ctx) as c:
        eq(c.execute(METABASE_FKS, [t, "public"]).fetchall(), [], "foreign keys")


@check
def metabase_timezone(ctx):
    with conn(ctx) as c:
        got = c.execute("show timezone;").fetchall()
        eq(got, [(c.info.parameter_status("TimeZone"),)], "show timezone vs ParameterStatus")


@check
def information_schema_columns(ctx):
    t, mv = setup(ctx)
    with conn(ctx) as c:
        want = [(ctx.dbname, "public", name, i + 1, typ, "pg_catalog", udt, "YES", None)
                for i, ((name, typ), udt) in enumerate(
                    zip(T_COLUMNS, ["int8", "int8", "text", "timestamp"]))]
        for what, sql, params, expected in [
            ("information_schema.columns",
             "SELECT table_catalog, table_schema, column_name, ordinal_position, data_type, "
             "udt_schema, udt_name, is_nullable, column_default FROM information_schema.columns "
             "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
             [t], want),
            ("information_schema.tables",
             "SELECT table_type FROM information_schema.tables "
             "WHERE table_schema = 'public' AND table_name = %s", [t], [("BASE TABLE",)]),
            ("key constraints",
             "SELECT constraint_type FROM information_schema.table_constraints "
             "WHERE table_schema = 'public' AND table_name = %s "
             "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY')", [t], []),
        ]:
            got = fetch(c, what, sql, params)
            if got is not None:
                eq(got, expected, what)
        # PostgreSQL's information_schema leaves materialized views out. eddy may list them (its
        # results are materialized views, and tools such as Grafana list tables from here), but
        # then as views with their true column types.
        got = fetch(c, "materialized view in information_schema.tables",
                    "SELECT table_type FROM information_schema.tables "
                    "WHERE table_schema = 'public' AND table_name = %s", [mv])
        if got:
            eq(got, [("VIEW",)], "table_type of a listed materialized view")
        got = fetch(c, "materialized view in information_schema.columns",
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
                    [mv])
        if got:
            eq(got, [("auction", "bigint"), ("n", "bigint")], "columns of a listed materialized view")


# --- psql -----------------------------------------------------------------------------------------


def psql(ctx, command):
    binary = shutil.which("psql")
    ok(binary is not None, "psql not on PATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k not in
           ("PSQLRC", "PAGER", "PSQL_PAGER")}
    out = subprocess.run(
        [binary, "-X", "-v", "ON_ERROR_STOP=1", "-P", "pager=off", "-d", ctx.dsn, "-c", command],
        env=env, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"psql -c '{command}' exited {out.returncode}: "
                             f"{out.stderr.strip()}")
    # psql reports an empty listing ("Did not find any relations.") on stderr.
    return out.stdout + out.stderr


def contains(out, needles, what):
    missing = [n for n in needles if n not in out]
    ok(not missing, f"{what}: {missing} not in output:\n{out}")


@check
def psql_dt(ctx):
    t, mv = setup(ctx)
    out = psql(ctx, "\\dt")
    contains(out, ["List of relations", f" public | {t} ", " table "], "\\dt")
    ok(f" {mv} " not in out, f"\\dt lists the materialized view:\n{out}")


@check
def psql_d_table(ctx):
    t, _ = setup(ctx)
    out = psql(ctx, f"\\d {t}")
    contains(out, [f'Table "public.{t}"', "auction", "price", "bidder", "bigint", "text",
                   "timestamp without time zone"], f"\\d {t}")


@check
def psql_d_plus_table(ctx):
    t, _ = setup(ctx)
    out = psql(ctx, f"\\d+ {t}")
    contains(out, [f'Table "public.{t}"', "Storage", "Stats target", "Description", "auction",
                   "bidder", "timestamp without time zone", "plain", "extended"], f"\\d+ {t}")


@check
def psql_d_plus_view(ctx):
    _, mv = setup(ctx)
    out = psql(ctx, f"\\d+ {mv}")
    contains(out, [f'Materialized view "public.{mv}"', "auction", "bigint", "View definition:"],
             f"\\d+ {mv}")


@check
def psql_dv(ctx):
    t, mv = setup(ctx)
    out = psql(ctx, "\\dv")
    with conn(ctx) as c:
        path = [r[0] for r in c.execute("SELECT unnest(current_schemas(false))").fetchall()]
    if path == ["public"]:
        # \dv lists the plain views visible through the search path; public has none here.
        contains(out, ["Did not find any relations."], f"\\dv (search path {path})")
    ok(f" {t} " not in out and f" {mv} " not in out, f"\\dv lists a table:\n{out}")


@check
def psql_dm(ctx):
    t, mv = setup(ctx)
    out = psql(ctx, "\\dm")
    contains(out, [f" public | {mv} ", "materialized view"], "\\dm")
    ok(f" {t} " not in out, f"\\dm lists the table:\n{out}")


@check
def psql_df(ctx):
    out = attempt("\\df", psql, ctx, "\\df")
    if out is not None:
        contains(out, ["List of functions", "Schema", "Name", "Result data type",
                       "Argument data types"], "\\df")
    out = attempt("\\df lower", psql, ctx, "\\df lower")
    if out is not None:
        contains(out, [" pg_catalog | lower ", " text "], "\\df lower")


@check
def psql_dn(ctx):
    out = psql(ctx, "\\dn")
    contains(out, ["List of schemas", " public "], "\\dn")


@check
def psql_l(ctx):
    out = psql(ctx, "\\l")
    contains(out, ["List of databases", f" {ctx.dbname} "], "\\l")


if __name__ == "__main__":
    run(__doc__.splitlines()[0])
