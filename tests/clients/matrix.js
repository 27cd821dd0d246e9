#!/usr/bin/env node
// node-postgres (pg, pg-cursor) against a real server, used the way applications use it.
//
//     node matrix.js PORT_OR_DSN [--reference] [--only SUBSTRING]
//
// PORT_OR_DSN: a port of eddy on 127.0.0.1 (user and database eddy), or a libpq key=value
// string (host=… port=… user=… dbname=…). --reference: the target is a real PostgreSQL, so the
// tables are created without eddy's WATERMARK clause; every expectation stays the same.
// Each check works on its own table t_<check name> and prints `PASS name` or
// `FAIL name: <error>`; then `N passed, N failed`; the exit status is 1 if any check failed.
// Driven by tests/clients.rs, with NODE_PATH pointing at the installed node_modules.
'use strict';

// node-pg reads TIMESTAMP (without time zone) as local time: make local time UTC.
process.env.TZ = 'UTC';

const assert = require('node:assert/strict');
const pg = require('pg');
const Cursor = require('pg-cursor');

const args = process.argv.slice(2);
const reference = args.includes('--reference');
const onlyAt = args.indexOf('--only');
const only = onlyAt >= 0 ? args[onlyAt + 1] : '';
const target = args.find((a, i) => !a.startsWith('--') && (onlyAt < 0 || i !== onlyAt + 1));
if (!target) {
  console.error('usage: node matrix.js PORT_OR_DSN [--reference] [--only SUBSTRING]');
  process.exit(2);
}

function config() {
  if (/^\d+$/.test(target)) {
    return { host: '127.0.0.1', port: Number(target), user: 'eddy', database: 'eddy' };
  }
  const kv = Object.fromEntries(
    target.trim().split(/\s+/).map((p) => p.split('=', 2)));
  return {
    host: kv.host || '127.0.0.1',
    port: Number(kv.port || 5432),
    user: kv.user || 'eddy',
    database: kv.dbname || kv.user || 'eddy',
  };
}

const COLUMNS = ['auction', 'price', 'bidder', 'ts'];
// int8, int8, text, timestamp
const OIDS = [20, 20, 25, 1114];
const ROWS = [
  [1, 100, 'alice', new Date(Date.UTC(2026, 0, 1, 0, 0, 1))],
  [2, null, null, new Date(Date.UTC(2026, 0, 1, 0, 0, 2))],
  [3, 300, 'carol', new Date(Date.UTC(2026, 0, 1, 0, 0, 3, 500))],
];
// What node-pg returns for ROWS: BIGINT as a string (it may not fit a JS number), TIMESTAMP as
// a Date, NULL as null.
const WANT = ROWS.map(([a, p, b, ts]) => ({
  auction: String(a), price: p === null ? null : String(p), bidder: b, ts,
}));

function ddl(t) {
  const wm = reference ? '' : ", WATERMARK FOR ts AS ts - INTERVAL '1' SECOND";
  return `CREATE TABLE ${t} (auction BIGINT, price BIGINT, bidder TEXT, ts TIMESTAMP${wm})`;
}

async function withClient(fn) {
  const c = new pg.Client({ ...config(), connectionTimeoutMillis: 10000 });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function fresh(c, t, rows = ROWS) {
  await c.query(`DROP TABLE IF EXISTS ${t}`);
  await c.query(ddl(t));
  for (const r of rows) {
    await c.query(`INSERT INTO ${t} VALUES ($1, $2, $3, $4)`, r);
  }
}

function rowsEqual(got, want, what) {
  assert.deepStrictEqual(got, want, what);
  for (const r of got) {
    assert.equal(typeof r.auction, 'string', `${what}: auction is a string`);
    assert.ok(r.ts instanceof Date, `${what}: ts is a Date`);
  }
}

const checks = [];
function check(name, fn) {
  checks.push({ name, fn });
}

check('pg_params', async (c, t) => {
  await c.query(`DROP TABLE IF EXISTS ${t}`);
  await c.query(ddl(t));
  for (const r of ROWS) {
    const res = await c.query(`INSERT INTO ${t} (auction, price, bidder, ts) VALUES ($1, $2, $3, $4)`, r);
    assert.equal(res.rowCount, 1, 'INSERT rowCount');
  }
  const res = await c.query(
    `SELECT auction, price, bidder, ts FROM ${t} WHERE auction >= $1 ORDER BY auction`, [1]);
  assert.deepStrictEqual(res.fields.map((f) => f.name), COLUMNS, 'field names');
  assert.deepStrictEqual(res.fields.map((f) => f.dataTypeID), OIDS, 'field type oids');
  rowsEqual(res.rows, WANT, 'rows');
  const byTs = await c.query(`SELECT bidder FROM ${t} WHERE ts = $1`, [ROWS[2][3]]);
  assert.deepStrictEqual(byTs.rows, [{ bidder: 'carol' }], 'Date parameter');
  const nulls = await c.query(`SELECT auction FROM ${t} WHERE price IS NULL AND bidder IS NULL`);
  assert.deepStrictEqual(nulls.rows, [{ auction: '2' }], 'NULL columns');
});

check('pg_bigint_as_string', async (c, t) => {
  await fresh(c, t);
  // 2^53 + 1: not a JS number; node-pg keeps BIGINT as text so nothing is lost.
  const big = '9007199254740993';
  await c.query(`INSERT INTO ${t} VALUES ($1, $2, $3, $4)`,
    [big, big, 'big', new Date(Date.UTC(2026, 0, 1, 0, 0, 4))]);
  const res = await c.query(`SELECT auction, price FROM ${t} WHERE auction = $1`, [big]);
  assert.deepStrictEqual(res.rows, [{ auction: big, price: big }], 'BIGINT round trip');
  const n = await c.query(`SELECT count(*) AS n FROM ${t}`);
  assert.deepStrictEqual(n.rows, [{ n: '4' }], 'count(*) as a string');
  assert.equal(n.fields[0].dataTypeID, 20, 'count(*) is int8');
});

check('pg_integer_types', async (c) => {
  // An integer literal is int4 in PostgreSQL, which node-pg returns as a number; only int8 is
  // returned as a string.
  const res = await c.query(
    'SELECT 1 AS one, 2::int AS i4, 3::smallint AS i2, 4::bigint AS i8, 1 + 1 AS two');
  assert.deepStrictEqual(res.rows, [{ one: 1, i4: 2, i2: 3, i8: '4', two: 2 }], 'values');
  assert.deepStrictEqual(res.fields.map((f) => f.dataTypeID), [23, 23, 21, 20, 23], 'type oids');
  const p = await c.query('SELECT $1::int AS i4', [7]);
  assert.deepStrictEqual(p.rows, [{ i4: 7 }], 'int parameter');
});

check('pg_named_prepared', async (c, t) => {
  await fresh(c, t);
  const text = `SELECT auction, price, bidder, ts FROM ${t} WHERE auction = $1`;
  // The first use parses the named statement; later ones only bind and execute it.
  for (const [i, r] of [0, 2, 1, 0].map((i) => [i, ROWS[i]])) {
    const res = await c.query({ name: 'bids_by_auction', text, values: [r[0]] });
    rowsEqual(res.rows, [WANT[i]], `auction ${r[0]}`);
  }
  const arr = await c.query({
    name: 'bids_count', text: `SELECT count(*) FROM ${t} WHERE ts < $1`,
    values: [new Date(Date.UTC(2026, 0, 1, 0, 0, 3))], rowMode: 'array',
  });
  assert.deepStrictEqual(arr.rows, [['2']], 'rowMode array');
});

check('pg_cursor', async (c, t) => {
  await fresh(c, t);
  const cursor = c.query(new Cursor(
    `SELECT auction, price, bidder, ts FROM ${t} WHERE auction >= $1 ORDER BY auction`, [1]));
  try {
    rowsEqual(await cursor.read(2), WANT.slice(0, 2), 'first read(2)');
    rowsEqual(await cursor.read(2), WANT.slice(2), 'second read(2)');
    assert.deepStrictEqual(await cursor.read(2), [], 'read past the end');
  } finally {
    await cursor.close();
  }
  const res = await c.query(`SELECT bidder FROM ${t} WHERE auction = $1`, [1]);
  assert.deepStrictEqual(res.rows, [{ bidder: 'alice' }], 'the connection after the cursor');
});

check('pg_error_recovery', async (c, t) => {
  await fresh(c, t);
  await assert.rejects(c.query(`SELECT * FROM ${t}_missing`), { code: '42P01' },
    'simple query on a missing table');
  await assert.rejects(c.query(`SELECT * FROM ${t}_missing WHERE auction = $1`, [1]),
    { code: '42P01' }, 'extended query on a missing table');
  const res = await c.query(`SELECT bidder FROM ${t} WHERE auction = $1`, [3]);
  assert.deepStrictEqual(res.rows, [{ bidder: 'carol' }], 'the next query');
});

function oneLine(e) {
  const text = e && e.message ? `${e.code ? e.code + ' ' : ''}${e.message}` : String(e);
  return text.replace(/\s*\n\s*/g, ' | ').slice(0, 1200);
}

(async () => {
  let passed = 0;
  let failed = 0;
  for (const { name, fn } of checks) {
    if (only && !name.includes(only)) continue;
    const t = `t_${name}`;
    try {
      await withClient((c) => fn(c, t));
      passed += 1;
      console.log(`PASS ${name}`);
    } catch (e) {
      failed += 1;
      console.log(`FAIL ${name}: ${oneLine(e)}`);
    }
    try {
      await withClient((c) => c.query(`DROP TABLE IF EXISTS ${t}`));
    } catch (_) {
      // Leftovers only matter on a long-lived dev server; the next run drops them first.
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
