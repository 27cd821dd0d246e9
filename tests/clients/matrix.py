#!/usr/bin/env python3
"""Python Postgres clients against a real server: psycopg 3, psycopg2, asyncpg, SQLAlchemy 2
(psycopg and psycopg2 dialects) and pandas, each used the way applications use it.

    python matrix.py PORT_OR_DSN [--reference] [--only SUBSTRING] [--list] [--traceback]

Every check works on its own table t_<check name>
(auction BIGINT, price BIGINT, bidder TEXT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
and asserts exact values and Python types, as PostgreSQL returns them (run with --reference
against a real PostgreSQL to see the expectations hold there). Driven by tests/clients.rs.
"""

import asyncio
import datetime as dt
import io
import warnings

import asyncpg
import pandas as pd
import psycopg
import psycopg2
import sqlalchemy as sa
from sqlalchemy import BigInteger, Text, TIMESTAMP
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from harness import COLUMNS, ROWS, attempt, check, eq, ok, row_types, run

# Oids of the result columns: int8, int8, text, timestamp.
OIDS = [20, 20, 25, 1114]
# ROWS as COPY text / CSV renders them.
COPY_TEXT = (
    "1\t100\talice\t2026-01-01 00:00:01\n"
    "2\t\\N\t\\N\t2026-01-01 00:00:02\n"
    "3\t300\tcarol\t2026-01-01 00:00:03.5\n"
)
CSV_HEADER = "auction,price,bidder,ts\n"
CSV_ROWS = (
    "1,100,alice,2026-01-01 00:00:01\n"
    "2,,,2026-01-01 00:00:02\n"
    "3,300,carol,2026-01-01 00:00:03.5\n"
)
SELECT = "SELECT auction, price, bidder, ts FROM {t} ORDER BY auction"


def rows_eq(got, want, what):
    got = [tuple(r) for r in got]
    eq(got, [tuple(r) for r in want], what)
    for r in got:
        row_types(r, what=what + " row")


# --- psycopg 3 ------------------------------------------------------------------------------------


@check
def psycopg3_params(ctx):
    """Default (transactional) connection: CREATE + INSERT with %s parameters, commit, SELECT with
    a parameter; result oids and Python types."""
    t = ctx.table()
    ctx.drop(t)
    with psycopg.connect(ctx.dsn) as conn:
        conn.execute(ctx.ddl(t))
        for r in ROWS:
            conn.execute(f"INSERT INTO {t} (auction, price, bidder, ts) VALUES (%s, %s, %s, %s)", r)
        conn.commit()
        cur = conn.execute(f"SELECT auction, price, bidder, ts FROM {t} WHERE auction >= %s "
                           "ORDER BY auction", (2,))
        eq([d.name for d in cur.description], COLUMNS, "column names")
        eq([d.type_code for d in cur.description], OIDS, "column type oids")
        rows_eq(cur.fetchall(), ROWS[1:], "rows")
        cur = conn.execute(f"SELECT bidder FROM {t} WHERE ts = %s AND bidder = %s",
                           (ROWS[0][3], "alice"))
        eq(cur.fetchall(), [("alice",)], "timestamp and text parameters")


@check
def psycopg3_executemany(ctx):
    t = ctx.fresh(rows=[])
    with psycopg.connect(ctx.dsn) as conn:
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {t} VALUES (%s, %s, %s, %s)", ROWS)
        conn.commit()
        rows_eq(conn.execute(SELECT.format(t=t)).fetchall(), ROWS, "rows")


@check
def psycopg3_prepare(ctx):
    """prepare=True: a named server-side prepared statement, executed again with other values."""
    t = ctx.fresh()
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        q = f"SELECT auction, price, bidder, ts FROM {t} WHERE auction = %s"
        for r in ROWS + ROWS:
            rows_eq(conn.execute(q, (r[0],), prepare=True).fetchall(), [r], f"auction {r[0]}")
        ins = f"INSERT INTO {t} VALUES (%s, %s, %s, %s)"
        extra = [(4, 400, "dave", dt.datetime(2026, 1, 1, 0, 0, 4)),
                 (5, None, "erin", dt.datetime(2026, 1, 1, 0, 0, 5))]
        for r in extra:
            eq(conn.execute(ins, r, prepare=True).rowcount, 1, "INSERT rowcount")
        rows_eq(ctx.read_back(t), ROWS + extra, "rows after prepared INSERTs")


@check
def psycopg3_nulls(ctx):
    t = ctx.fresh()
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        got = conn.execute(f"SELECT price, bidder FROM {t} WHERE price IS NULL").fetchall()
        eq(got, [(None, None)], "NULL columns")
        cur = conn.execute("SELECT NULL::bigint AS a, NULL::text AS b, NULL::timestamp AS c")
        eq([d.type_code for d in cur.description], [20, 25, 1114], "typed NULL oids")
        eq(cur.fetchall(), [(None, None, None)], "typed NULL literals")
        got = conn.execute(f"SELECT auction FROM {t} WHERE price IS NOT DISTINCT FROM %s",
                           (None,)).fetchall()
        eq(got, [(2,)], "NULL parameter")


@check
def psycopg3_result_columns(ctx):
    """Columns are named, and constants typed, as PostgreSQL names and types them; text
    compared with a timestamp may leave out the seconds. Over the extended protocol (psycopg's
    default) and the simple one (ClientCursor)."""
    from decimal import Decimal

    t = ctx.fresh()
    queries = [
        (f"SELECT count(*), max(price), min(ts) FROM {t}",
         ["count", "max", "min"], None),
        (f"SELECT x.auction, price::int, price + 1, upper(bidder) FROM {t} x "
         f"WHERE auction = 1",
         ["auction", "price", "?column?", "upper"], None),
        ("SELECT 1, 1 + 1, 'a'::text, current_setting('server_encoding'), 2.50::numeric, "
         "-7 AS n",
         ["?column?", "?column?", "text", "current_setting", "numeric", "n"],
         [23, 23, 25, 25, 1700, 23]),
    ]
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        for cursor in (conn.cursor(), psycopg.ClientCursor(conn)):
            kind = type(cursor).__name__
            for sql, names, oids in queries:
                cursor.execute(sql)
                eq([d.name for d in cursor.description], names, f"{kind} names of {sql}")
                if oids is not None:
                    eq([d.type_code for d in cursor.description], oids, f"{kind} oids of {sql}")
            cursor.execute(queries[2][0])
            eq(cursor.fetchone(), (1, 2, "a", "UTF8", Decimal("2.50"), -7), f"{kind} constants")
            cursor.execute(f"SELECT auction FROM {t} WHERE ts > '2026-01-01 00:00' "
                           f"AND ts < '2026-01-01 0:01' AND price IS DISTINCT FROM 300 "
                           f"ORDER BY 1")
            eq(cursor.fetchall(), [(1,), (2,)], f"{kind} timestamps without seconds")


@check
def psycopg3_named_cursor(ctx):
    """conn.cursor(name=...): DECLARE … CURSOR, FETCH FORWARD n, CLOSE inside a transaction."""
    t = ctx.fresh()
    with psycopg.connect(ctx.dsn) as conn:
        with conn.cursor(name="bids_cursor") as cur:
            cur.itersize = 2
            cur.execute(f"SELECT auction, price, bidder, ts FROM {t} WHERE auction >= %s "
                        "ORDER BY auction", (1,))
            eq([d.name for d in cur.description], COLUMNS, "column names")
            first = cur.fetchmany(2)
            rest = cur.fetchall()
        rows_eq(first, ROWS[:2], "fetchmany(2)")
        rows_eq(rest, ROWS[2:], "fetchall() after fetchmany")
        with conn.cursor(name="bids_iter") as cur:
            cur.itersize = 1
            cur.execute(SELECT.format(t=t))
            rows_eq(list(cur), ROWS, "iterating a named cursor")
        conn.commit()


@check
def psycopg3_copy_to_rows(ctx):
    t = ctx.fresh()
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY ({SELECT.format(t=t)}) TO STDOUT") as copy:
                copy.set_types(["int8", "int8", "text", "timestamp"])
                got = list(copy.rows())
            rows_eq(got, ROWS, "COPY (SELECT …) TO STDOUT rows")
            with cur.copy(f"COPY ({SELECT.format(t=t)}) TO STDOUT") as copy:
                raw = b"".join(bytes(b) for b in copy).decode()
            eq(raw, COPY_TEXT, "COPY text format")


@check
def psycopg3_copy_to_csv_header(ctx):
    t = ctx.fresh()
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY {t} TO STDOUT (FORMAT csv, HEADER)") as copy:
                raw = b"".join(bytes(b) for b in copy).decode()
    lines = raw.splitlines(keepends=True)
    eq(lines[:1], [CSV_HEADER], "CSV header")
    # COPY of a table has no ORDER BY: compare the data lines as a set.
    eq(sorted(lines[1:]), CSV_ROWS.splitlines(keepends=True), "CSV rows")


@check
def psycopg3_copy_from_stdin(ctx):
    t = ctx.fresh(rows=[])
    tricky = (4, 400, "tab\there, back\\slash, new\nline", dt.datetime(2026, 1, 1, 0, 0, 4))
    with psycopg.connect(ctx.dsn) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY {t} (auction, price, bidder, ts) FROM STDIN") as copy:
                for r in ROWS + [tricky]:
                    copy.write_row(r)
            eq(cur.rowcount, 4, "rowcount of COPY FROM")
        conn.commit()
        eq(conn.execute(f"SELECT count(*) FROM {t}").fetchone(), (4,), "count(*)")
    rows_eq(ctx.read_back(t), ROWS + [tricky], "rows")


# --- psycopg2 -------------------------------------------------------------------------------------


def pg2_connect(ctx):
    return psycopg2.connect(ctx.dsn)


@check
def psycopg2_params(ctx):
    t = ctx.table()
    ctx.drop(t)
    conn = pg2_connect(ctx)
    try:
        cur = conn.cursor()
        cur.execute(ctx.ddl(t))
        cur.executemany(f"INSERT INTO {t} VALUES (%s, %s, %s, %s)", ROWS)
        conn.commit()
        cur.execute(f"SELECT auction, price, bidder, ts FROM {t} "
                    "WHERE auction >= %(lo)s AND ts <= %(until)s ORDER BY auction",
                    {"lo": 1, "until": ROWS[-1][3]})
        eq([d.name for d in cur.description], COLUMNS, "column names")
        eq([d.type_code for d in cur.description], OIDS, "column type oids")
        rows_eq(cur.fetchall(), ROWS, "rows")
        cur.execute(f"SELECT bidder FROM {t} WHERE bidder = %s", ("it's",))
        eq(cur.fetchall(), [], "quoted string parameter")
        conn.commit()
    finally:
        conn.close()


@check
def psycopg2_copy_expert_to_csv(ctx):
    t = ctx.fresh()
    conn = pg2_connect(ctx)
    try:
        buf = io.StringIO()
        conn.cursor().copy_expert(f"COPY ({SELECT.format(t=t)}) TO STDOUT WITH CSV HEADER", buf)
        eq(buf.getvalue(), CSV_HEADER + CSV_ROWS, "CSV")
        conn.commit()
    finally:
        conn.close()


@check
def psycopg2_copy_expert_from_csv(ctx):
    """CSV in: an unquoted empty field is NULL, a quoted one the empty string."""
    t = ctx.fresh(rows=[])
    data = (
        "1,100,alice,2026-01-01 00:00:01\n"
        '2,,"",2026-01-01 00:00:02\n'
        '3,300,"quote "" and, comma",2026-01-01 00:00:03.5\n'
    )
    conn = pg2_connect(ctx)
    try:
        cur = conn.cursor()
        cur.copy_expert(f"COPY {t} FROM STDIN WITH (FORMAT csv)", io.StringIO(data))
        eq(cur.rowcount, 3, "rowcount of COPY FROM")
        conn.commit()
    finally:
        conn.close()
    want = [ROWS[0], (2, None, "", ROWS[1][3]), (3, 300, 'quote " and, comma', ROWS[2][3])]
    rows_eq(ctx.read_back(t), want, "rows")


@check
def psycopg2_copy_from(ctx):
    """cursor.copy_from: COPY t (cols) FROM stdin WITH DELIMITER AS '\t' NULL AS '\\N'."""
    t = ctx.fresh(rows=[])
    conn = pg2_connect(ctx)
    try:
        cur = conn.cursor()
        cur.copy_from(io.StringIO(COPY_TEXT), t, columns=COLUMNS)
        conn.commit()
    finally:
        conn.close()
    rows_eq(ctx.read_back(t), ROWS, "rows")


# --- asyncpg --------------------------------------------------------------------------------------


async def apg_connect(ctx):
    return await asyncpg.connect(host=ctx.host, port=ctx.port, user=ctx.user,
                                 database=ctx.dbname, timeout=10)


def arun(ctx, coro_fn):
    async def go():
        conn = await apg_connect(ctx)
        try:
            await coro_fn(conn)
        finally:
            await conn.close()
    asyncio.run(go())


@check
def asyncpg_fetch_params(ctx):
    t = ctx.table()
    ctx.drop(t)

    async def body(conn):
        await conn.execute(ctx.ddl(t))
        for r in ROWS:
            await conn.execute(f"INSERT INTO {t} VALUES ($1, $2, $3, $4)", *r)
        got = await conn.fetch(f"SELECT auction, price, bidder, ts FROM {t} WHERE auction >= $1 "
                               "ORDER BY auction", 1)
        eq([list(r.keys()) for r in got[:1]], [COLUMNS], "record keys")
        rows_eq(got, ROWS, "rows")
        eq(await conn.fetchval(f"SELECT bidder FROM {t} WHERE ts = $1", ROWS[2][3]), "carol",
           "fetchval with a timestamp parameter")
        eq(await conn.fetchval(f"SELECT count(*) FROM {t} WHERE bidder IS NULL"), 1,
           "count(*) as int")
    arun(ctx, body)


@check
def asyncpg_prepared(ctx):
    t = ctx.fresh()

    async def body(conn):
        stmt = await conn.prepare(f"SELECT auction, price, bidder, ts FROM {t} "
                                  "WHERE auction >= $1 ORDER BY auction")
        eq([p.name for p in stmt.get_parameters()], ["int8"], "parameter types")
        eq([(a.name, a.type.name) for a in stmt.get_attributes()],
           list(zip(COLUMNS, ["int8", "int8", "text", "timestamp"])), "result attributes")
        rows_eq(await stmt.fetch(2), ROWS[1:], "fetch($1 = 2)")
        rows_eq(await stmt.fetch(1), ROWS, "fetch($1 = 1)")
        rows_eq([await stmt.fetchrow(3)], ROWS[2:], "fetchrow")
        eq(await stmt.fetchval(4), None, "fetchval with no row")
    arun(ctx, body)


@check
def asyncpg_executemany(ctx):
    t = ctx.fresh(rows=[])

    async def body(conn):
        await conn.executemany(f"INSERT INTO {t} VALUES ($1, $2, $3, $4)", ROWS)
        rows_eq(await conn.fetch(SELECT.format(t=t)), ROWS, "rows")
    arun(ctx, body)


@check
def asyncpg_copy_from_query(ctx):
    t = ctx.fresh()

    async def body(conn):
        buf = io.BytesIO()
        status = await conn.copy_from_query(SELECT.format(t=t), output=buf, format="csv",
                                            header=True)
        eq(status, "COPY 3", "status")
        eq(buf.getvalue().decode(), CSV_HEADER + CSV_ROWS, "CSV")
        buf = io.BytesIO()
        await conn.copy_from_query(SELECT.format(t=t), output=buf)
        eq(buf.getvalue().decode(), COPY_TEXT, "text format")
    arun(ctx, body)


@check
def asyncpg_copy_records_to_table(ctx):
    """copy_records_to_table: `SELECT cols FROM t LIMIT 1` to learn the column types, then
    `COPY t(cols) FROM STDIN (FORMAT binary)`. PostgreSQL loads the rows; so must eddy."""
    t = ctx.fresh(rows=[])

    async def body(conn):
        status = await conn.copy_records_to_table(t, records=ROWS, columns=COLUMNS)
        eq(status, "COPY 3", "status")
    arun(ctx, body)
    rows_eq(ctx.read_back(t), ROWS, "rows")


@check
def asyncpg_transaction_cursor(ctx):
    """Cursors inside a transaction: portals executed a few rows at a time."""
    t = ctx.fresh()

    async def body(conn):
        q = f"SELECT auction, price, bidder, ts FROM {t} WHERE auction >= $1 ORDER BY auction"
        async with conn.transaction():
            got = [r async for r in conn.cursor(q, 1, prefetch=2)]
            rows_eq(got, ROWS, "async for over a cursor, prefetch=2")
            cur = await conn.cursor(q, 1)
            rows_eq(await cur.fetch(2), ROWS[:2], "cursor.fetch(2)")
            rows_eq([await cur.fetchrow()], ROWS[2:], "cursor.fetchrow()")
            eq(await cur.fetchrow(), None, "cursor.fetchrow() at the end")
    arun(ctx, body)


# --- SQLAlchemy 2 ---------------------------------------------------------------------------------


def engine(ctx, driver):
    url = sa.engine.URL.create(f"postgresql+{driver}", username=ctx.user, host=ctx.host,
                               port=ctx.port, database=ctx.dbname)
    return sa.create_engine(url, connect_args={"connect_timeout": 10})


def sa_connect(ctx, driver):
    """First connect runs the dialect's version, schema and setting queries."""
    eng = engine(ctx, driver)
    try:
        with eng.connect() as conn:
            eq(conn.execute(sa.text("SELECT 1")).scalar(), 1, "SELECT 1")
            eq(eng.dialect.default_schema_name, "public", "default schema")
            ok(eng.dialect.server_version_info >= (9, 6),
               f"server_version_info {eng.dialect.server_version_info}")
            eq(conn.get_isolation_level(), "READ COMMITTED", "isolation level")
            eq(conn.execute(sa.text("SELECT current_user")).scalar(), ctx.user, "current_user")
    finally:
        eng.dispose()


def sa_text_binds(ctx, driver):
    t = ctx.fresh(rows=[])
    eng = engine(ctx, driver)
    try:
        with eng.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {t} VALUES (:a, :p, :b, :ts)"),
                         [dict(zip(["a", "p", "b", "ts"], r)) for r in ROWS])
        with eng.connect() as conn:
            got = conn.execute(sa.text(f"SELECT auction, price, bidder, ts FROM {t} "
                                       "WHERE auction >= :lo AND ts < :hi ORDER BY auction"),
                               {"lo": 1, "hi": dt.datetime(2026, 1, 2)}).all()
            rows_eq(got, ROWS, "rows")
            eq(conn.execute(sa.text(f"SELECT bidder FROM {t} WHERE auction = :a"),
                            {"a": 3}).scalar_one(), "carol", "scalar_one")
    finally:
        eng.dispose()


def sa_inspect_tables(ctx, driver):
    t = ctx.fresh(mv=True)
    mv = t + "_mv"
    eng = engine(ctx, driver)
    try:
        insp = sa.inspect(eng)
        ok(t in insp.get_table_names(), f"{t} not in get_table_names() {insp.get_table_names()}")
        ok(mv not in insp.get_table_names(), "a materialized view in get_table_names()")
        # Without a schema, SQLAlchemy lists the views visible through the search path
        # (pg_table_is_visible): exactly those of the schemas in current_schemas(false).
        with eng.connect() as conn:
            path = conn.execute(sa.text("SELECT unnest(current_schemas(false))")).scalars().all()
        want = sorted(v for s in path for v in insp.get_view_names(schema=s))
        eq(sorted(insp.get_view_names()), want,
           f"get_view_names() vs the views of the search path {path}")
        ok(t not in want and mv not in want, f"a table or materialized view among views {want}")
        ok(mv in insp.get_materialized_view_names(),
           f"{mv} not in get_materialized_view_names() {insp.get_materialized_view_names()}")
        ok(insp.has_table(t), "has_table(table)")
        ok(not insp.has_table(t + "_nope"), "has_table(missing)")
    finally:
        eng.dispose()


def sa_inspect_columns(ctx, driver):
    """What Table(autoload_with=…) asks the inspector, call by call (each is its own query)."""
    t = ctx.fresh(mv=True)
    mv = t + "_mv"
    eng = engine(ctx, driver)
    try:
        insp = sa.inspect(eng)
        cols = attempt("get_columns", insp.get_columns, t)
        if cols is not None:
            eq([c["name"] for c in cols], COLUMNS, "column names")
            types = [type(c["type"]).__name__ for c in cols]
            eq(types, ["BIGINT", "BIGINT", "TEXT", "TIMESTAMP"], "column types")
            eq([getattr(c["type"], "timezone", None) for c in cols[3:]], [False],
               "ts is TIMESTAMP WITHOUT TIME ZONE")
            eq([c["nullable"] for c in cols], [True] * 4, "nullable")
            eq([c["default"] for c in cols], [None] * 4, "defaults")
        pk = attempt("get_pk_constraint", insp.get_pk_constraint, t)
        if pk is not None:
            eq(pk["constrained_columns"], [], "primary key")
        for what, fn in [("get_foreign_keys", insp.get_foreign_keys),
                         ("get_indexes", insp.get_indexes),
                         ("get_unique_constraints", insp.get_unique_constraints),
                         ("get_check_constraints", insp.get_check_constraints)]:
            got = attempt(what, fn, t)
            if got is not None:
                eq(got, [], what)
        comment = attempt("get_table_comment", insp.get_table_comment, t)
        if comment is not None:
            eq(comment, {"text": None}, "get_table_comment")
        mcols = attempt("get_columns(materialized view)", insp.get_columns, mv)
        if mcols is not None:
            eq([(c["name"], type(c["type"]).__name__) for c in mcols],
               [("auction", "BIGINT"), ("n", "BIGINT")], "materialized view columns")
    finally:
        eng.dispose()


def sa_autoload(ctx, driver):
    t = ctx.fresh()
    eng = engine(ctx, driver)
    try:
        table = sa.Table(t, sa.MetaData(), autoload_with=eng)
        eq(list(table.c.keys()), COLUMNS, "reflected columns")
        with eng.connect() as conn:
            got = conn.execute(sa.select(table).order_by(table.c.auction)).all()
            rows_eq(got, ROWS, "select(table)")
            got = conn.execute(sa.select(table.c.bidder, table.c.ts)
                               .where(table.c.ts > dt.datetime(2026, 1, 1, 0, 0, 2))
                               .order_by(table.c.ts)).all()
            eq([tuple(r) for r in got], [("carol", ROWS[2][3])], "select with a where clause")
            got = conn.execute(sa.select(sa.func.count()).select_from(table)
                               .where(table.c.price.is_(None))).scalar_one()
            eq(got, 1, "count of NULL prices")
    finally:
        eng.dispose()


def sa_orm(ctx, driver):
    t = ctx.fresh()

    class Base(DeclarativeBase):
        pass

    class Bid(Base):
        __tablename__ = t
        # The table has no primary key; the mapping declares one, as an application would.
        auction: Mapped[int] = mapped_column(BigInteger, primary_key=True)
        price: Mapped[int | None] = mapped_column(BigInteger)
        bidder: Mapped[str | None] = mapped_column(Text)
        ts: Mapped[dt.datetime] = mapped_column(TIMESTAMP)

    eng = engine(ctx, driver)
    try:
        with Session(eng) as s:
            got = s.scalars(sa.select(Bid).order_by(Bid.auction)).all()
            rows_eq([(b.auction, b.price, b.bidder, b.ts) for b in got], ROWS, "mapped objects")
            b = s.scalars(sa.select(Bid).where(Bid.bidder == "carol")).one()
            eq((b.auction, b.price), (3, 300), "filtered object")
            s.add(Bid(auction=4, price=400, bidder="dave", ts=dt.datetime(2026, 1, 1, 0, 0, 4)))
            s.commit()
        rows_eq(ctx.read_back(t), ROWS + [(4, 400, "dave", dt.datetime(2026, 1, 1, 0, 0, 4))],
                "rows after session.add + commit")
    finally:
        eng.dispose()


for _driver in ["psycopg", "psycopg2"]:
    for _fn in [sa_connect, sa_text_binds, sa_inspect_tables, sa_inspect_columns, sa_autoload,
                sa_orm]:
        def _bound(ctx, _fn=_fn, _driver=_driver):
            _fn(ctx, _driver)
        _bound.__name__ = f"sqlalchemy_{_driver}_{_fn.__name__[3:]}"
        check(_bound)


# --- pandas ---------------------------------------------------------------------------------------


def check_frame(df, what):
    eq(list(df.columns), COLUMNS, f"{what} columns")
    eq(str(df["auction"].dtype), "int64", f"{what} auction dtype")
    # A NULL in an integer column makes it float64 with NaN.
    eq(str(df["price"].dtype), "float64", f"{what} price dtype")
    ok(str(df["ts"].dtype).startswith("datetime64["), f"{what} ts dtype {df['ts'].dtype}")
    ok(pd.api.types.is_string_dtype(df["bidder"]), f"{what} bidder dtype {df['bidder'].dtype}")
    eq(df["auction"].tolist(), [1, 2, 3], f"{what} auction")
    prices = df["price"].tolist()
    ok(prices[0] == 100.0 and pd.isna(prices[1]) and prices[2] == 300.0, f"{what} price {prices}")
    bidders = df["bidder"].tolist()
    ok(bidders[0] == "alice" and pd.isna(bidders[1]) and bidders[2] == "carol",
       f"{what} bidder {bidders}")
    eq([ts.to_pydatetime() for ts in df["ts"]], [r[3] for r in ROWS], f"{what} ts")


@check
def pandas_read_sql_sqlalchemy(ctx):
    t = ctx.fresh()
    eng = engine(ctx, "psycopg2")
    try:
        check_frame(pd.read_sql(sa.text(SELECT.format(t=t)), eng), "query")
        df = pd.read_sql(sa.text(f"SELECT * FROM {t} WHERE auction = :a"), eng, params={"a": 3})
        eq(df["bidder"].tolist(), ["carol"], "query with params")
        # A bare table name: read_sql_table, which reflects the table first.
        check_frame(pd.read_sql(t, eng).sort_values("auction", ignore_index=True), "table")
    finally:
        eng.dispose()


@check
def pandas_read_sql_psycopg2(ctx):
    t = ctx.fresh()
    conn = psycopg2.connect(ctx.dsn)
    try:
        with warnings.catch_warnings():
            # pandas warns that only SQLAlchemy connectables are tested; psycopg2 still works.
            warnings.simplefilter("ignore", UserWarning)
            check_frame(pd.read_sql(SELECT.format(t=t), conn), "psycopg2")
            df = pd.read_sql(f"SELECT auction FROM {t} WHERE bidder = %s", conn,
                             params=("alice",))
            eq(df["auction"].tolist(), [1], "query with params")
    finally:
        conn.close()


if __name__ == "__main__":
    run(__doc__.splitlines()[0])
