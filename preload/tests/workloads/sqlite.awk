# sqlite.awk - writes the SQL of the sqlite3 workload: a few thousand single-row inserts, an
# index, updates and deletes, point queries, joins, grouping, a recursive CTE, and sorting.
#   awk -v rows=6000 -f sqlite.awk | sqlite3 db
BEGIN {
  if (rows == 0) rows = 6000
  seed = 12345
  print "PRAGMA journal_mode=DELETE;"
  print "CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT NOT NULL, grp INTEGER, price REAL, note TEXT);"
  print "CREATE TABLE tag(item INTEGER REFERENCES item(id), label TEXT);"
  print "BEGIN;"
  for (i = 1; i <= rows; i++) {
    seed = (seed * 1103515245 + 12345) % 2147483648
    grp = seed % 97
    price = (seed % 100000) / 100
    note = ""
    for (k = 0; k < seed % 7; k++) note = note sprintf("w%d ", (seed / (k + 1)) % 1000)
    printf "INSERT INTO item(name, grp, price, note) VALUES('item-%06d-%d', %d, %.2f, '%s');\n", seed % 1000000, i, grp, price, note
    if (i % 3 == 0) printf "INSERT INTO tag VALUES(%d, 'label-%d');\n", i, seed % 50
  }
  print "COMMIT;"
  print "CREATE INDEX item_grp ON item(grp, price);"
  print "CREATE INDEX tag_item ON tag(item);"
  print "UPDATE item SET price = price * 1.1 WHERE grp % 5 = 0;"
  print "DELETE FROM item WHERE id % 17 = 0;"
  for (q = 1; q <= 2000; q++) {
    seed = (seed * 1103515245 + 12345) % 2147483648
    printf "SELECT name, price FROM item WHERE id = %d;\n", seed % rows + 1
  }
  print "SELECT grp, count(*), round(sum(price), 2), min(name), max(name) FROM item GROUP BY grp ORDER BY grp;"
  print "SELECT t.label, count(*), round(avg(i.price), 3) FROM tag t JOIN item i ON i.id = t.item GROUP BY t.label ORDER BY 2 DESC, 1 LIMIT 20;"
  print "SELECT name FROM item ORDER BY note DESC, name LIMIT 25;"
  print "WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < 200000)"
  print "  SELECT count(*), sum(x % 7), max(length(printf('%08d', x * 31))) FROM seq;"
  print "SELECT group_concat(name, ',') FROM (SELECT name FROM item WHERE grp = 3 ORDER BY price LIMIT 40);"
  print "CREATE TABLE copy AS SELECT * FROM item ORDER BY note, name;"
  print "SELECT count(*), count(DISTINCT note), sum(length(name)) FROM copy;"
  print "VACUUM;"
  print "PRAGMA integrity_check;"
}
