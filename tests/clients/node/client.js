// Differential client on node-mysql2 for tests/node_client.rs: runs one fixed script of statements
// (text and prepared, multiple results, warnings, JSON, charsets, transactions, change user) and
// prints what the library sees, one fact per line, each prefixed with its step name so that the
// harness can compare a direct run with a run through the proxy step by step.
// Usage: node client.js HOST PORT USER PASSWORD DB
'use strict';
const mysql = require('mysql2/promise');

const [host, port, user, password, database] = process.argv.slice(2);

// The two runs use different schemas; their name is masked so that the lines compare.
function say(step, fact) {
  process.stdout.write(`${step}: ${String(fact).split(database).join('<db>')}\n`);
}

function show(value) {
  if (value === null || value === undefined) return 'NULL';
  if (Buffer.isBuffer(value)) return `0x${value.toString('hex')}`;
  if (typeof value === 'object') return `${value.constructor.name}${JSON.stringify(value)}`;
  return `${typeof value}:${value}`;
}

function sayFields(step, fields) {
  for (const f of fields || []) {
    say(step, `col name=${f.name} org=${f.orgName} table=${f.orgTable} type=${f.columnType} ` +
      `charset=${f.characterSet} length=${f.columnLength} decimals=${f.decimals} flags=${f.flags}`);
  }
}

function sayResult(step, result, fields) {
  if (Array.isArray(result)) {
    sayFields(step, fields);
    for (const row of result) say(step, `row ${Object.values(row).map(show).join(' ')}`);
    say(step, `rows=${result.length}`);
  } else {
    say(step, `ok affected=${result.affectedRows} insert_id=${result.insertId} status=${result.serverStatus} ` +
      `warnings=${result.warningStatus} info=${JSON.stringify(result.info)}`);
  }
}

// Runs `sql` with `how` ('query': text protocol, 'execute': prepared) and prints every result.
async function run(conn, step, sql, params, how = 'query') {
  try {
    const [result, fields] = await conn[how](sql, params);
    // With several statements mysql2 returns one entry per result.
    const multi = how === 'query' && Array.isArray(result) && Array.isArray(fields) && Array.isArray(fields[0]);
    const isOkList = Array.isArray(result) && result.length > 0 && result.every((r) => r && r.constructor &&
      r.constructor.name === 'ResultSetHeader');
    if (multi || (isOkList && sql.includes(';'))) {
      result.forEach((r, i) => sayResult(`${step}`, r, fields ? fields[i] : undefined));
    } else {
      sayResult(step, result, fields);
    }
  } catch (err) {
    say(step, `error ${err.errno} ${err.sqlState} ${err.sqlMessage || err.message}`);
  }
}

async function open(db) {
  return mysql.createConnection({
    host, port: Number(port), user, password, database: db,
    multipleStatements: true, supportBigNumbers: true, bigNumberStrings: true, dateStrings: true,
    charset: 'UTF8MB4_UNICODE_CI', connectTimeout: 10000,
  });
}

async function main() {
  let conn = await open(database);
  await run(conn, 'setup', 'DROP TABLE IF EXISTS t, b');
  await run(conn, 'create_t', 'CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, s VARCHAR(20) CHARACTER SET utf8mb4, ' +
    'j JSON, d DECIMAL(10,3), ts DATETIME(3), bi BIGINT UNSIGNED, bl BLOB)');
  await run(conn, 'insert_text', "INSERT INTO t (s, j, d, ts, bi, bl) VALUES ('caf\u00e9 \u{1F600}', '{\"a\": [1, 2]}', " +
    "1.5, '2024-01-02 03:04:05.678', 18446744073709551615, x'00ff'), (NULL, NULL, NULL, NULL, NULL, NULL)");
  await run(conn, 'select_text', 'SELECT * FROM t ORDER BY id');
  await run(conn, 'insert_prepared', 'INSERT INTO t (s, j, d, ts, bi, bl) VALUES (?, ?, ?, ?, ?, ?)',
    ['\u00fcber \u{1F680}', '{"b": true}', '2.250', '2025-05-06 07:08:09.123', '42', Buffer.from([1, 2, 3])], 'execute');
  await run(conn, 'select_prepared', 'SELECT * FROM t WHERE id >= ? ORDER BY id', [1], 'execute');
  await run(conn, 'select_prepared_again', 'SELECT s, d FROM t WHERE id = ?', [3], 'execute');
  await run(conn, 'json', 'SELECT j, JSON_TYPE(j) AS jt FROM t WHERE id = 1');
  await run(conn, 'json_prepared', 'SELECT j FROM t WHERE id = ?', [3], 'execute');
  await run(conn, 'literals', "SELECT 1 AS i, 'x' AS s, NULL AS n, 1.50 AS d, 2e0 AS f, _latin1'l' AS l");
  await run(conn, 'multi_results', "SELECT 1 AS a; SELECT 'two' AS b; DO 0");
  await run(conn, 'warnings', 'SELECT 1/0 AS z');
  await run(conn, 'show_warnings', 'SHOW WARNINGS');
  await run(conn, 'warning_count', 'SELECT @@warning_count AS w');
  await run(conn, 'insert_ignore', "INSERT IGNORE INTO t (id, s) VALUES (1, 'dup')");
  await run(conn, 'row_count', 'SELECT ROW_COUNT() AS rc');
  await run(conn, 'user_var', 'SET @a = 41');
  await run(conn, 'user_var_read', 'SELECT @a + 1 AS a');
  await run(conn, 'temporary', 'CREATE TEMPORARY TABLE tmp1 (x INT)');
  await run(conn, 'temporary_use', 'INSERT INTO tmp1 VALUES (1), (2)');
  await run(conn, 'temporary_read', 'SELECT COUNT(*) AS n FROM tmp1');
  await run(conn, 'charset', 'SELECT @@character_set_client, @@character_set_connection, @@character_set_results, ' +
    '@@collation_connection');
  await run(conn, 'begin', 'BEGIN');
  await run(conn, 'in_txn', "INSERT INTO t (s) VALUES ('txn')");
  await run(conn, 'in_txn_read', "SELECT COUNT(*) AS n FROM t WHERE s = 'txn'");
  await run(conn, 'rollback', 'ROLLBACK');
  await run(conn, 'after_rollback', "SELECT COUNT(*) AS n FROM t WHERE s = 'txn'");
  await run(conn, 'error', 'SELECT * FROM no_such_table');
  await run(conn, 'error_prepared', 'SELECT * FROM no_such_table WHERE id = ?', [1], 'execute');
  await run(conn, 'dup_key', "INSERT INTO t (id, s) VALUES (1, 'dup')");
  await run(conn, 'autocommit_off', 'SET autocommit = 0');
  await run(conn, 'autocommit_status', 'SELECT 1 AS one');
  await run(conn, 'autocommit_on', 'SET autocommit = 1');
  try {
    await conn.changeUser({ user, password, database });
    say('change_user', 'ok');
  } catch (err) {
    say('change_user', `error ${err.errno} ${err.sqlMessage || err.message}`);
  }
  await run(conn, 'after_change_user', 'SELECT @a AS a, DATABASE() AS db');
  await conn.end();

  conn = await open(database);
  // Another session's rows: the hint keeps the read off a replica that may lag (harmless directly).
  await run(conn, 'new_session', '/* rwsplit:primary */ SELECT COUNT(*) AS n, @a AS a FROM t');
  await conn.end();
  say('done', 'ok');
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
