"""Shared support for the client scripts in this directory (matrix.py, tools.py).

A check is a function registered with @check; it gets a Ctx and states its expectations with
eq/ok, which record a mismatch and let the check go on (so one run shows every difference of a
check); an exception ends the check. Each check is reported as one line: `PASS name` or
`FAIL name: <error>; <error>…`. The scripts end with
`N passed, N failed` and exit 1 if any check failed (2 on a usage error).

The target is a libpq connection string (or a bare port: eddy's defaults, user and database
`eddy` on 127.0.0.1). `--reference` marks a real PostgreSQL: the tables are then created without
eddy's WATERMARK clause, which PostgreSQL does not parse; every expectation stays the same, so a
run against PostgreSQL shows that the checks ask for what PostgreSQL does.
"""

import argparse
import datetime as dt
import re
import sys
import traceback

import psycopg
from psycopg.conninfo import conninfo_to_dict

# The rows most checks start from, in the order of the table's columns
# (auction BIGINT, price BIGINT, bidder TEXT, ts TIMESTAMP): a NULL price and bidder, and
# fractional seconds.
ROWS = [
    (1, 100, "alice", dt.datetime(2026, 1, 1, 0, 0, 1)),
    (2, None, None, dt.datetime(2026, 1, 1, 0, 0, 2)),
    (3, 300, "carol", dt.datetime(2026, 1, 1, 0, 0, 3, 500000)),
]
ROW_TYPES = (int, int, str, dt.datetime)
COLUMNS = ["auction", "price", "bidder", "ts"]

_CHECKS = []


def check(fn):
    """Registers `fn` as a check named after the function."""
    _CHECKS.append(fn)
    return fn


# Mismatches found by eq/ok in the running check. They do not stop the check, so one run lists
# every difference of a check, not only the first; an exception still ends it.
_mismatches = []


def eq(got, want, what):
    if got != want:
        _mismatches.append(f"{what}: got {got!r}, want {want!r}")


def ok(cond, what):
    if not cond:
        _mismatches.append(what)


def attempt(what, fn, *args, **kwargs):
    """fn(*args, **kwargs), or None after recording its exception as a mismatch: for checks made
    of independent calls, so one failing call does not hide the others."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - reported with the check
        _mismatches.append(f"{what}: {one_line(e)}")
        return None


def row_types(row, types=ROW_TYPES, what="row"):
    """Every non-NULL value of `row` is exactly of its type in `types` (bool is not an int)."""
    got = tuple(type(v) for v in row)
    ok(all(v is None or type(v) is t for v, t in zip(row, types)),
       f"{what} {row!r}: Python types {got}, want {types} (or None)")


def sql_literal(v):
    if v is None:
        return "NULL"
    if isinstance(v, dt.datetime):
        return f"TIMESTAMP '{v.isoformat(sep=' ')}'"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return str(v)


class Ctx:
    def __init__(self, args):
        self.reference = args.reference
        target = args.target
        if re.fullmatch(r"\d+", target):
            target = f"host=127.0.0.1 port={target} user=eddy dbname=eddy"
        self.dsn = target + " connect_timeout=10"
        params = conninfo_to_dict(target)
        self.host = params.get("host", "127.0.0.1")
        self.port = int(params.get("port", 5432))
        self.user = params.get("user", "eddy")
        self.dbname = params.get("dbname", self.user)
        self._admin = None
        self.name = None

    def admin(self):
        """An autocommit psycopg 3 connection for setup and for reading back what a check wrote."""
        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(self.dsn, autocommit=True)
        return self._admin

    def ddl(self, table):
        watermark = "" if self.reference else ", WATERMARK FOR ts AS ts - INTERVAL '1' SECOND"
        return (
            f"CREATE TABLE {table} (auction BIGINT, price BIGINT, bidder TEXT, ts TIMESTAMP"
            f"{watermark})"
        )

    def table(self):
        """This check's table name (derived from the check's name, so checks never share one)."""
        return "t_" + self.name

    def drop(self, table, mv=None):
        a = self.admin()
        if mv:
            a.execute(f"DROP MATERIALIZED VIEW IF EXISTS {mv}")
        a.execute(f"DROP TABLE IF EXISTS {table}")

    def fresh(self, rows=ROWS, mv=False):
        """Creates this check's table (dropping a leftover) and inserts `rows` with plain SQL
        through the admin connection; with `mv`, also `<table>_mv`, a materialized view
        (auction, n) over it. Returns the table name."""
        t = self.table()
        self.drop(t, t + "_mv")
        a = self.admin()
        a.execute(self.ddl(t))
        if rows:
            values = ", ".join("(" + ", ".join(sql_literal(v) for v in r) + ")" for r in rows)
            a.execute(f"INSERT INTO {t} VALUES {values}")
        if mv:
            a.execute(
                f"CREATE MATERIALIZED VIEW {t}_mv AS "
                f"SELECT auction, count(*) AS n FROM {t} GROUP BY auction"
            )
        return t

    def read_back(self, table):
        return self.admin().execute(f"SELECT * FROM {table} ORDER BY auction").fetchall()

    def cleanup(self):
        t = self.table()
        try:
            self.drop(t, t + "_mv")
        except Exception:
            # Leftovers only matter on a long-lived dev server; the next run drops them first.
            if self._admin is not None:
                self._admin.close()
            self._admin = None


def flat(text):
    """`text` on one line, at most 600 characters."""
    text = re.sub(r"\s*\n\s*", " | ", text.strip()).rstrip(" |")
    return text if len(text) <= 600 else text[:600] + " …"


def one_line(e):
    """An exception on one line; SQLAlchemy's echo of the statement and its parameters is cut."""
    return flat(re.split(r"\n\[SQL: ", f"{type(e).__name__}: {e}")[0])


def main(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("target", nargs="?",
                   help="libpq connection string, or a port of eddy on 127.0.0.1")
    p.add_argument("--reference", action="store_true",
                   help="the target is a real PostgreSQL: create tables without WATERMARK")
    p.add_argument("--only", default="", help="run only checks whose name contains this")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument("--traceback", action="store_true", help="print a traceback for failures")
    args = p.parse_args()
    if args.list:
        for fn in _CHECKS:
            print(fn.__name__)
        return 0
    if not args.target:
        p.error("a target is required")
    ctx = Ctx(args)
    passed = failed = 0
    for fn in _CHECKS:
        if args.only and args.only not in fn.__name__:
            continue
        ctx.name = fn.__name__
        _mismatches.clear()
        errors = []
        try:
            fn(ctx)
        except Exception as e:  # noqa: BLE001 - every failure is a reported result
            errors = [one_line(e)]
            if args.traceback:
                traceback.print_exc()
        errors = [flat(m) for m in _mismatches] + errors
        if errors:
            failed += 1
            print(f"FAIL {fn.__name__}: {'; '.join(errors)}", flush=True)
        else:
            passed += 1
            print(f"PASS {fn.__name__}", flush=True)
        ctx.cleanup()
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


def run(description):
    sys.exit(main(description))
