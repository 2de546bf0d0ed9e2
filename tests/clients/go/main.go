// A small real-client program: Go's database/sql with go-sql-driver/mysql (Debian's
// golang-github-go-sql-driver-mysql-dev), run against the rwsplit proxy by tests/clients.rs.
//
// It does CRUD over the text protocol, server-side prepared statements (COM_STMT_PREPARE /
// EXECUTE / CLOSE: with interpolateParams=false, which is the driver's default, every query with
// `?` arguments is prepared on the server) and transactions (COMMIT and ROLLBACK), checking where
// statements ran through `SELECT @@port`.
//
// Built offline in GOPATH mode (no go.mod, no module proxy):
//
//	GO111MODULE=off GOPROXY=off GOPATH=/usr/share/gocode go build -o go-client ./tests/clients/go
//
// Usage: go-client -port PROXY_PORT -db DATABASE -primary-port PRIMARY_PORT
//
// Prints one line per check and exits 1 on the first failure.
package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/go-sql-driver/mysql"
)

// How long a read of this client's own committed write may take to reach a replica: the proxy's
// default consistency is "eventual", so a read after a write may run on a replica that lags.
const replicationWait = 15 * time.Second

var (
	ctx         context.Context
	primaryPort int
)

func ok(format string, args ...interface{}) {
	fmt.Printf("ok   "+format+"\n", args...)
}

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

func must(err error, what string) {
	if err != nil {
		var myErr *mysql.MySQLError
		if errors.As(err, &myErr) {
			fail("%s: server error %d: %s", what, myErr.Number, myErr.Message)
		}
		fail("%s: %v", what, err)
	}
}

// queryer is what *sql.DB, *sql.Tx and *sql.Conn have in common.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...interface{}) *sql.Row
	ExecContext(ctx context.Context, query string, args ...interface{}) (sql.Result, error)
}

func portOf(q queryer, query string, args ...interface{}) int {
	var port int
	must(q.QueryRowContext(ctx, query, args...).Scan(&port), query)
	return port
}

func execAffected(q queryer, want int64, query string, args ...interface{}) sql.Result {
	res, err := q.ExecContext(ctx, query, args...)
	must(err, query)
	n, err := res.RowsAffected()
	must(err, query+": RowsAffected")
	if n != want {
		fail("%s: %d rows affected, want %d", query, n, want)
	}
	return res
}

// eventually retries check until it returns nil or replicationWait passes, then fails with the
// last error.
func eventually(what string, check func() error) {
	deadline := time.Now().Add(replicationWait)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			fail("%s (still failing after %v): %v", what, replicationWait, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func main() {
	proxyPort := flag.Int("port", 0, "the proxy's MySQL port")
	database := flag.String("db", "", "database to work in (must exist)")
	flag.IntVar(&primaryPort, "primary-port", 0, "@@port of the primary")
	flag.Parse()
	if *proxyPort == 0 || *database == "" || primaryPort == 0 {
		fmt.Fprintln(os.Stderr, "usage: go-client -port PROXY_PORT -db DATABASE -primary-port PRIMARY_PORT")
		os.Exit(2)
	}
	var cancel context.CancelFunc
	ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// interpolateParams=false is the default; spelled out because the prepared-statement checks
	// depend on it.
	dsn := fmt.Sprintf("app:app@tcp(127.0.0.1:%d)/%s?interpolateParams=false&parseTime=true&loc=UTC"+
		"&charset=utf8mb4&timeout=5s&readTimeout=30s&writeTimeout=30s", *proxyPort, *database)
	db, err := sql.Open("mysql", dsn)
	must(err, "open")
	defer db.Close()
	db.SetMaxOpenConns(4)

	must(db.PingContext(ctx), "ping")
	var version string
	must(db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version), "SELECT VERSION()")
	ok("connected through the proxy on port %d (server %s)", *proxyPort, version)

	if port := portOf(db, "SELECT @@port"); port == primaryPort {
		fail("a plain read outside a transaction ran on the primary (%d), want a replica", port)
	} else {
		ok("plain read ran on replica %d", port)
	}

	crud(db)
	prepared(db)
	transactions(db)
	fmt.Println("go client: all checks passed")
}

// crud uses only statements without arguments, so everything goes over COM_QUERY.
func crud(db *sql.DB) {
	_, err := db.ExecContext(ctx, "CREATE TABLE items (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(64) "+
		"CHARACTER SET utf8mb4 NOT NULL, qty INT NOT NULL)")
	must(err, "CREATE TABLE items")
	ok("create table")

	res := execAffected(db, 3, "INSERT INTO items (name, qty) VALUES ('apple', 1), ('pear', 2), ('plum', 3)")
	first, err := res.LastInsertId()
	must(err, "LastInsertId")
	if first < 1 {
		fail("insert: LastInsertId %d", first)
	}
	ok("insert 3 rows (first id %d)", first)

	execAffected(db, 1, "UPDATE items SET qty = qty * 10 WHERE name = 'pear'")
	ok("update 1 row")
	execAffected(db, 1, "DELETE FROM items WHERE name = 'plum'")
	ok("delete 1 row")

	want := "apple=1,pear=20,"
	eventually("select after insert/update/delete", func() error {
		rows, err := db.QueryContext(ctx, "SELECT name, qty FROM items ORDER BY id")
		if err != nil {
			return err
		}
		defer rows.Close()
		got := ""
		for rows.Next() {
			var name string
			var qty int
			if err := rows.Scan(&name, &qty); err != nil {
				return err
			}
			got += fmt.Sprintf("%s=%d,", name, qty)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("rows %q, want %q", got, want)
		}
		return nil
	})
	ok("select sees %s", want)
}

type typedRow struct {
	id    int64
	big   int64
	small int64
	f     float64
	s     string
	blob  []byte
	when  time.Time
	null  sql.NullString
}

// prepared uses `?` arguments: the driver prepares each statement on the server and executes it
// with binary-encoded parameters; results of prepared SELECTs come back as binary rows.
func prepared(db *sql.DB) {
	_, err := db.ExecContext(ctx, "CREATE TABLE typed (id BIGINT PRIMARY KEY, big BIGINT NOT NULL, "+
		"small BIGINT NOT NULL, f DOUBLE NOT NULL, s VARCHAR(100) CHARACTER SET utf8mb4 NOT NULL, "+
		"b BLOB NOT NULL, w DATETIME(6) NOT NULL, n VARCHAR(10) NULL)")
	must(err, "CREATE TABLE typed")

	rows := []typedRow{
		{1, math.MaxInt64, math.MinInt64, math.Pi, "plain ascii", []byte{0, 1, 2, 0xff, 0xfe}, time.Date(2024, 2, 29, 23, 59, 59, 123456000, time.UTC), sql.NullString{}},
		{2, 0, -1, -1.5e-300, "utf8mb4: 😀 ünïcødé 漢字", bytes.Repeat([]byte{0xab}, 60000), time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), sql.NullString{String: "x", Valid: true}},
		{3, 42, 7, 0, "", []byte{}, time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC), sql.NullString{String: "", Valid: true}},
	}
	insert, err := db.PrepareContext(ctx, "INSERT INTO typed (id, big, small, f, s, b, w, n) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
	must(err, "prepare INSERT")
	for _, r := range rows {
		res, err := insert.ExecContext(ctx, r.id, r.big, r.small, r.f, r.s, r.blob, r.when, r.null)
		must(err, fmt.Sprintf("execute INSERT id=%d", r.id))
		if n, _ := res.RowsAffected(); n != 1 {
			fail("execute INSERT id=%d: %d rows affected", r.id, n)
		}
	}
	must(insert.Close(), "close INSERT")
	ok("prepared insert of %d rows with int64 limits, doubles, utf8mb4, blobs, DATETIME(6), NULL", len(rows))

	sel, err := db.PrepareContext(ctx, "SELECT big, small, f, s, b, w, n FROM typed WHERE id = ?")
	must(err, "prepare SELECT")
	defer sel.Close()
	for _, r := range rows {
		r := r
		eventually(fmt.Sprintf("prepared select id=%d", r.id), func() error {
			var got typedRow
			if err := sel.QueryRowContext(ctx, r.id).Scan(&got.big, &got.small, &got.f, &got.s, &got.blob, &got.when, &got.null); err != nil {
				return err
			}
			switch {
			case got.big != r.big || got.small != r.small:
				return fmt.Errorf("integers %d/%d, want %d/%d", got.big, got.small, r.big, r.small)
			case got.f != r.f:
				return fmt.Errorf("double %v, want %v", got.f, r.f)
			case got.s != r.s:
				return fmt.Errorf("string %q, want %q", got.s, r.s)
			case !bytes.Equal(got.blob, r.blob):
				return fmt.Errorf("blob of %d bytes differs (want %d bytes)", len(got.blob), len(r.blob))
			case !got.when.Equal(r.when):
				return fmt.Errorf("datetime %v, want %v", got.when, r.when)
			case got.null != r.null:
				return fmt.Errorf("nullable %+v, want %+v", got.null, r.null)
			}
			return nil
		})
	}
	ok("prepared select returns every value unchanged")

	// One statement, many executions: the proxy re-prepares it on whichever backend runs it.
	sum := 0
	for i := 0; i < 50; i++ {
		var v int
		must(sel.QueryRowContext(ctx, int64(3)).Scan(new(int64), new(int64), new(float64), new(string), new([]byte), new(time.Time), new(sql.NullString)), "execute SELECT again")
		must(db.QueryRowContext(ctx, "SELECT ? + ?", i, 1).Scan(&v), "SELECT ? + ?")
		sum += v
	}
	if sum != 50*51/2 {
		fail("SELECT ? + ? over 50 executions summed to %d, want %d", sum, 50*51/2)
	}
	ok("50 executions of a prepared select and 50 one-shot prepared queries")

	if port := portOf(db, "SELECT @@port + ?", 0); port == primaryPort {
		fail("a prepared read outside a transaction ran on the primary (%d), want a replica", port)
	} else {
		ok("prepared read ran on replica %d", port)
	}

	execAffected(db, 1, "UPDATE typed SET n = ? WHERE id = ?", "upd", int64(1))
	execAffected(db, 1, "DELETE FROM typed WHERE id = ?", int64(3))
	eventually("select after prepared update/delete", func() error {
		var n sql.NullString
		var count int
		if err := db.QueryRowContext(ctx, "SELECT n, (SELECT COUNT(*) FROM typed) FROM typed WHERE id = ?", int64(1)).Scan(&n, &count); err != nil {
			return err
		}
		if n.String != "upd" || count != 2 {
			return fmt.Errorf("n=%+v count=%d, want upd and 2", n, count)
		}
		return nil
	})
	ok("prepared update and delete")

	var myErr *mysql.MySQLError
	_, err = db.ExecContext(ctx, "INSERT INTO typed (id, big, small, f, s, b, w) VALUES (?, 0, 0, 0, '', '', NOW())", int64(1))
	if !errors.As(err, &myErr) || myErr.Number != 1062 {
		fail("duplicate key through a prepared insert: got %v, want error 1062", err)
	}
	ok("prepared insert of a duplicate key fails with 1062 and the connection stays usable")
}

func transactions(db *sql.DB) {
	// COMMIT: reads inside the transaction run on the primary and see its writes.
	tx, err := db.BeginTx(ctx, nil)
	must(err, "BEGIN")
	if port := portOf(tx, "SELECT @@port"); port != primaryPort {
		fail("read at the start of a transaction ran on %d, want the primary %d", port, primaryPort)
	}
	res := execAffected(tx, 1, "INSERT INTO items (name, qty) VALUES (?, ?)", "fig", 5)
	id, err := res.LastInsertId()
	must(err, "LastInsertId in transaction")
	var qty int
	must(tx.QueryRowContext(ctx, "SELECT qty FROM items WHERE id = ?", id).Scan(&qty), "read own write in transaction")
	if qty != 5 {
		fail("read inside the transaction saw qty %d, want 5", qty)
	}
	execAffected(tx, 1, "UPDATE items SET qty = qty + 1 WHERE id = ?", id)
	stmt, err := tx.PrepareContext(ctx, "SELECT qty, @@port FROM items WHERE id = ?")
	must(err, "prepare in transaction")
	var port int
	must(stmt.QueryRowContext(ctx, id).Scan(&qty, &port), "execute in transaction")
	must(stmt.Close(), "close statement in transaction")
	if qty != 6 || port != primaryPort {
		fail("prepared read inside the transaction: qty %d on %d, want 6 on the primary %d", qty, port, primaryPort)
	}
	must(tx.Commit(), "COMMIT")
	ok("transaction: reads on the primary (%d) see the transaction's writes; COMMIT", primaryPort)
	eventually("committed row visible after COMMIT", func() error {
		var q int
		if err := db.QueryRowContext(ctx, "SELECT qty FROM items WHERE id = ?", id).Scan(&q); err != nil {
			return err
		}
		if q != 6 {
			return fmt.Errorf("qty %d, want 6", q)
		}
		return nil
	})
	ok("committed row visible after COMMIT")

	// ROLLBACK: the transaction's writes are gone afterwards, on the primary too.
	tx, err = db.BeginTx(ctx, nil)
	must(err, "BEGIN")
	execAffected(tx, 1, "INSERT INTO items (name, qty) VALUES (?, ?)", "rolled-back", 99)
	execAffected(tx, 1, "UPDATE items SET qty = 0 WHERE id = ?", id)
	var count int
	must(tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM items WHERE name = ?", "rolled-back").Scan(&count), "read in transaction")
	if count != 1 {
		fail("read inside the transaction saw %d uncommitted rows, want 1", count)
	}
	if port := portOf(tx, "SELECT @@port"); port != primaryPort {
		fail("read inside a transaction ran on %d, want the primary %d", port, primaryPort)
	}
	must(tx.Rollback(), "ROLLBACK")

	// Check on the primary: a new transaction runs there.
	tx, err = db.BeginTx(ctx, nil)
	must(err, "BEGIN")
	if port := portOf(tx, "SELECT @@port"); port != primaryPort {
		fail("read inside a transaction ran on %d, want the primary %d", port, primaryPort)
	}
	must(tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM items WHERE name = 'rolled-back'").Scan(&count), "count after ROLLBACK")
	must(tx.QueryRowContext(ctx, "SELECT qty FROM items WHERE id = ?", id).Scan(&qty), "qty after ROLLBACK")
	must(tx.Commit(), "COMMIT")
	if count != 0 || qty != 6 {
		fail("after ROLLBACK the primary has %d rolled-back rows and qty %d, want 0 and 6", count, qty)
	}
	ok("ROLLBACK discards the transaction's insert and update")
}
