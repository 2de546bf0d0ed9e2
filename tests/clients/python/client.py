"""A small real-client program: PyMySQL (Debian's python3-pymysql), run against the rwsplit proxy
by tests/clients.rs.

It does CRUD, parameterised queries, SQL-level prepared statements and transactions (COMMIT and
ROLLBACK, with autocommit on and with PyMySQL's default autocommit off), checking where statements
ran through `SELECT @@port`.

PyMySQL has no server-side (binary protocol) prepared statements: `cursor.execute(sql, params)`
escapes and interpolates the parameters on the client and sends one COM_QUERY. The binary protocol
(COM_STMT_PREPARE/EXECUTE) is covered by the Go client; here the server-side prepared statements
are the text-protocol `PREPARE ... FROM` / `EXECUTE ... USING` / `DEALLOCATE PREPARE`, which the
proxy must keep on one backend connection.

Run with an interpreter that has PyMySQL, e.g. Debian's /usr/bin/python3:

    /usr/bin/python3 tests/clients/python/client.py --port PROXY_PORT --db DATABASE --primary-port PRIMARY_PORT

Prints one line per check and exits 1 on the first failure.
"""

import argparse
import datetime
import decimal
import sys
import time

import pymysql

# How long a read of this client's own committed write may take to reach a replica: the proxy's
# default consistency is "eventual", so a read after a write may run on a replica that lags.
REPLICATION_WAIT = 15.0


class CheckFailed(Exception):
    pass


def ok(message):
    print("ok   " + message, flush=True)


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def eventually(what, probe):
    """Retries probe() (which raises CheckFailed while not yet true) until REPLICATION_WAIT passes."""
    deadline = time.monotonic() + REPLICATION_WAIT
    while True:
        try:
            return probe()
        except CheckFailed as err:
            if time.monotonic() > deadline:
                raise CheckFailed(f"{what} (still failing after {REPLICATION_WAIT}s): {err}") from None
        time.sleep(0.05)


def scalar(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
        check(row is not None, f"{sql}: no row")
        return row[0]


def connect(args, autocommit):
    return pymysql.connect(
        host="127.0.0.1",
        port=args.port,
        user="app",
        password="app",
        database=args.db,
        charset="utf8mb4",
        autocommit=autocommit,
        binary_prefix=True,
        connect_timeout=5,
        read_timeout=30,
        write_timeout=30,
    )


def crud(conn):
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE items (id INT PRIMARY KEY AUTO_INCREMENT,"
            " name VARCHAR(64) CHARACTER SET utf8mb4 NOT NULL, qty INT NOT NULL)"
        )
        ok("create table")
        n = cur.execute("INSERT INTO items (name, qty) VALUES ('apple', 1), ('pear', 2), ('plum', 3)")
        check(n == 3, f"insert affected {n} rows, want 3")
        check(cur.lastrowid >= 1, f"lastrowid {cur.lastrowid}")
        ok(f"insert 3 rows (first id {cur.lastrowid})")
        n = cur.execute("UPDATE items SET qty = qty * 10 WHERE name = 'pear'")
        check(n == 1, f"update affected {n} rows, want 1")
        ok("update 1 row")
        n = cur.execute("DELETE FROM items WHERE name = 'plum'")
        check(n == 1, f"delete affected {n} rows, want 1")
        ok("delete 1 row")

    want = (("apple", 1), ("pear", 20))

    def probe():
        with conn.cursor() as cur:
            cur.execute("SELECT name, qty FROM items ORDER BY id")
            got = cur.fetchall()
        check(got == want, f"rows {got}, want {want}")

    eventually("select after insert/update/delete", probe)
    ok(f"select sees {want}")


def parameterised(conn):
    """Client-side interpolated parameters of every common type, read back unchanged."""
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE typed (id BIGINT PRIMARY KEY, big BIGINT NOT NULL, small BIGINT NOT NULL,"
            " f DOUBLE NOT NULL, d DECIMAL(30, 10) NOT NULL, s VARCHAR(100) CHARACTER SET utf8mb4 NOT NULL,"
            " b BLOB NOT NULL, w DATETIME(6) NOT NULL, n VARCHAR(10) NULL)"
        )
        rows = [
            (1, 2**63 - 1, -(2**63), 3.141592653589793, decimal.Decimal("-12345678901234567890.0123456789"),
             "it's \"quoted\" \\ back\\slash", bytes([0, 1, 2, 0x27, 0x5C, 0xFF]),
             datetime.datetime(2024, 2, 29, 23, 59, 59, 123456), None),
            (2, 0, -1, -1.5e-300, decimal.Decimal("0.0000000001"), "utf8mb4: 😀 ünïcødé 漢字",
             bytes([0xAB]) * 60000, datetime.datetime(1970, 1, 1), "x"),
            (3, 42, 7, 0.0, decimal.Decimal("0E-10"), "", b"", datetime.datetime(9999, 12, 31, 23, 59, 59, 999999), ""),
        ]
        n = cur.executemany("INSERT INTO typed (id, big, small, f, d, s, b, w, n) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
        check(n == len(rows), f"executemany affected {n} rows, want {len(rows)}")
    ok(f"parameterised insert of {len(rows)} rows (int64 limits, doubles, decimals, quotes, utf8mb4, blobs, NULL)")

    for row in rows:
        def probe(row=row):
            with conn.cursor() as cur:
                cur.execute("SELECT id, big, small, f, d, s, b, w, n FROM typed WHERE id = %s", (row[0],))
                got = cur.fetchone()
            check(got is not None, f"row id={row[0]} not found")
            got = tuple(bytes(v) if isinstance(v, (bytes, bytearray)) else v for v in got)
            check(got == row, f"row id={row[0]}: got {got!r:.300}, want {row!r:.300}")

        eventually(f"parameterised select id={row[0]}", probe)
    ok("parameterised select returns every value unchanged")

    with conn.cursor() as cur:
        n = cur.execute("UPDATE typed SET n = %(n)s WHERE id = %(id)s", {"n": "upd", "id": 1})
        check(n == 1, f"update affected {n} rows")
        n = cur.execute("DELETE FROM typed WHERE id IN %s", ((3, 4, 5),))
        check(n == 1, f"delete affected {n} rows")

    def probe():
        got = scalar(conn, "SELECT GROUP_CONCAT(CONCAT(id, ':', IFNULL(n, 'NULL')) ORDER BY id) FROM typed")
        check(got == "1:upd,2:x", f"after update/delete: {got!r}")

    eventually("select after parameterised update/delete", probe)
    ok("parameterised update and delete")

    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO typed (id, big, small, f, d, s, b, w) VALUES (%s, 0, 0, 0, 0, '', '', NOW())", (1,))
        raise CheckFailed("duplicate key insert succeeded")
    except pymysql.err.IntegrityError as err:
        check(err.args[0] == 1062, f"duplicate key: {err}, want 1062")
    check(scalar(conn, "SELECT 1 + %s", (1,)) == 2, "connection unusable after an error")
    ok("duplicate key fails with 1062 and the connection stays usable")


def sql_prepared(conn):
    """Text-protocol server-side prepared statements: they live on one backend connection."""
    with conn.cursor() as cur:
        cur.execute("PREPARE find FROM 'SELECT name, qty FROM items WHERE name = ?'")
        cur.execute("PREPARE bump FROM 'UPDATE items SET qty = qty + ? WHERE name = ?'")
        cur.execute("SET @n = 'apple', @by = 4")
        cur.execute("EXECUTE bump USING @by, @n")
        check(cur.rowcount == 1, f"EXECUTE bump affected {cur.rowcount} rows")
        cur.execute("EXECUTE find USING @n")
        got = cur.fetchall()
        check(got == (("apple", 5),), f"EXECUTE find returned {got}, want (('apple', 5),)")
        for i in range(20):
            cur.execute("EXECUTE find USING @n")
            check(cur.fetchall() == got, f"execution {i} of find differs")
        cur.execute("DEALLOCATE PREPARE find")
        cur.execute("DEALLOCATE PREPARE bump")
    ok("PREPARE / EXECUTE USING / DEALLOCATE PREPARE (22 executions)")


def transactions(conn, primary):
    # COMMIT: reads inside the transaction run on the primary and see its writes.
    conn.begin()
    port = scalar(conn, "SELECT @@port")
    check(port == primary, f"read at the start of a transaction ran on {port}, want the primary {primary}")
    with conn.cursor() as cur:
        cur.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("fig", 5))
        fig = cur.lastrowid
    check(scalar(conn, "SELECT qty FROM items WHERE id = %s", (fig,)) == 5, "transaction does not see its insert")
    with conn.cursor() as cur:
        cur.execute("UPDATE items SET qty = qty + 1 WHERE id = %s", (fig,))
    with conn.cursor() as cur:
        cur.execute("SELECT qty, @@port FROM items WHERE id = %s", (fig,))
        got = cur.fetchone()
    check(got == (6, primary), f"read inside the transaction: {got}, want (6, {primary})")
    conn.commit()
    ok(f"transaction: reads on the primary ({primary}) see the transaction's writes; COMMIT")

    def probe():
        qty = scalar(conn, "SELECT qty FROM items WHERE id = %s", (fig,))
        check(qty == 6, f"qty {qty}, want 6")

    eventually("committed row visible after COMMIT", probe)
    ok("committed row visible after COMMIT")

    # ROLLBACK: the transaction's writes are gone afterwards, on the primary too.
    conn.begin()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("rolled-back", 99))
        cur.execute("UPDATE items SET qty = 0 WHERE id = %s", (fig,))
    check(scalar(conn, "SELECT COUNT(*) FROM items WHERE name = 'rolled-back'") == 1, "uncommitted insert not visible")
    port = scalar(conn, "SELECT @@port")
    check(port == primary, f"read inside a transaction ran on {port}, want the primary {primary}")
    conn.rollback()
    conn.begin()
    with conn.cursor() as cur:
        cur.execute("SELECT @@port, (SELECT COUNT(*) FROM items WHERE name = 'rolled-back'), qty FROM items WHERE id = %s", (fig,))
        got = cur.fetchone()
    conn.commit()
    check(got == (primary, 0, 6), f"after ROLLBACK (port, rolled-back rows, qty) = {got}, want ({primary}, 0, 6)")
    ok("ROLLBACK discards the transaction's insert and update")


def default_autocommit_off(args, primary):
    """PyMySQL's default is autocommit=False: every statement is inside an implicit transaction."""
    conn = connect(args, autocommit=False)
    try:
        port = scalar(conn, "SELECT @@port")
        check(port == primary, f"with autocommit=0 a read ran on {port}, want the primary {primary}")
        with conn.cursor() as cur:
            cur.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("implicit", 1))
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("UPDATE items SET qty = 100 WHERE name = %s", ("implicit",))
        check(scalar(conn, "SELECT qty FROM items WHERE name = 'implicit'") == 100, "implicit transaction misses its update")
        conn.rollback()
        got = scalar(conn, "SELECT qty FROM items WHERE name = 'implicit'")
        conn.commit()
        check(got == 1, f"after rollback with autocommit=0 qty is {got}, want 1")
        ok(f"autocommit=0 (PyMySQL's default): everything on the primary ({primary}), commit and rollback")
    finally:
        conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="the proxy's MySQL port")
    parser.add_argument("--db", required=True, help="database to work in (must exist)")
    parser.add_argument("--primary-port", type=int, required=True, help="@@port of the primary")
    args = parser.parse_args()
    primary = args.primary_port

    try:
        conn = connect(args, autocommit=True)
        version = scalar(conn, "SELECT VERSION()")
        ok(f"connected through the proxy on port {args.port} with PyMySQL {pymysql.__version__} (server {version})")
        port = scalar(conn, "SELECT @@port")
        check(port != primary, f"a plain read outside a transaction ran on the primary ({port}), want a replica")
        ok(f"plain read ran on replica {port}")
        crud(conn)
        parameterised(conn)
        sql_prepared(conn)
        transactions(conn, primary)
        conn.close()
        default_autocommit_off(args, primary)
    except CheckFailed as err:
        print(f"FAIL {err}", flush=True)
        return 1
    except pymysql.MySQLError as err:
        print(f"FAIL server or driver error: {err!r}", flush=True)
        return 1
    print("python client: all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
