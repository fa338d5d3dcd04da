#!/usr/bin/python3
"""SQLite WAL workload for bench/run: many small fsync'd transactions while a reader polls.

  sqlite_wal.py DB TRANSACTIONS    prints "<writer seconds> <reader queries> <transactions>"

The writer commits TRANSACTIONS single-row transactions (journal_mode=WAL,
synchronous=FULL, so every commit fsyncs the WAL) with a checkpoint every 1,000 pages
(SQLite's default). A reader process, started first, runs a count + max query in a loop
until the writer is done; it checks what it sees only ever grows, and the run fails if
the final row count is not TRANSACTIONS. Only the writer's span is timed.
"""
import os
import sqlite3
import subprocess
import sys
import time

ROW = os.urandom(200)


def connect(db):
    con = sqlite3.connect(db, timeout=30, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    return con


def reader(db):
    con = connect(db)
    queries, last = 0, -1
    # The writer closes our stdin when it is done; poll it without blocking.
    os.set_blocking(sys.stdin.fileno(), False)
    while True:
        n, = con.execute("SELECT count(*) FROM t").fetchone()
        if n < last:
            sys.exit("reader saw the row count go back from %d to %d" % (last, n))
        last, queries = n, queries + 1
        try:
            if os.read(sys.stdin.fileno(), 1) == b"":
                break
        except BlockingIOError:
            pass
        time.sleep(0.002)
    print(queries)


def writer(db, count):
    con = connect(db)
    con.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, k INTEGER, v BLOB)")
    con.execute("CREATE INDEX IF NOT EXISTS t_k ON t(k)")
    rd = subprocess.Popen([sys.executable, __file__, "--reader", db], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
    t0 = time.perf_counter()
    for i in range(count):
        con.execute("BEGIN")
        con.execute("INSERT INTO t (k, v) VALUES (?, ?)", ((i * 7919) % 100003, ROW))
        con.execute("COMMIT")
    dt = time.perf_counter() - t0
    rd.stdin.close()
    out = rd.stdout.read()
    rd.wait(timeout=60)
    if rd.returncode != 0:
        sys.exit("sqlite reader failed")
    n, = con.execute("SELECT count(*) FROM t").fetchone()
    ok, = con.execute("PRAGMA integrity_check").fetchone()
    if n != count or ok != "ok":
        sys.exit("sqlite: %d rows (expected %d), integrity_check %s" % (n, count, ok))
    print("%.6f %d %d" % (dt, int(out.strip() or 0), count))


if __name__ == "__main__":
    if sys.argv[1] == "--reader":
        reader(sys.argv[2])
    else:
        writer(sys.argv[1], int(sys.argv[2]))
