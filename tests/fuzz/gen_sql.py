"""Seeded SQL generators: what a hostile or careless client might send to /api/sql and
Flight SQL. Everything is a pure function of a random.Random, so a seed replays a run.

Result sizes are kept bounded on purpose (joins aggregate or LIMIT, projections LIMIT):
the suite looks for crashes, hangs and wrong status codes, not for slow clients reading
a 400 M-row cross product. The deliberately heavy joins are few (each costs a timeout).
"""

TABLES = ["postgres.logs", "hdfs.logs"]
COLUMNS = ["id", '"timestamp"', "level", "service", "host", "message", "metadata", "created_at"]
LABELS = ["'ERROR'", "'INFO'", "'WARN'", "'DEBUG'", "'api-gateway'", "'worker-1'", "'payment-service'"]
TYPES = ["BIGINT", "INT", "SMALLINT", "TINYINT", "DOUBLE", "REAL", "VARCHAR", "TEXT", "BOOLEAN", "DATE", "TIMESTAMP",
         "DECIMAL(38,10)", "DECIMAL(3,2)", "BYTEA", "INTERVAL", "TIME", "INT UNSIGNED", "FLOAT8", "NOTATYPE"]
BINOPS = ["+", "-", "*", "/", "%", "||", "=", "<>", "!=", "<", "<=", ">", ">=", "AND", "OR", "LIKE", "ILIKE",
          "NOT LIKE", "~", "~*", "IS DISTINCT FROM", "IS NOT DISTINCT FROM", "&", "|", "#", "<<", ">>", "^", "@>"]
FUNCS = ["abs", "round", "floor", "ceil", "sqrt", "ln", "log", "log10", "power", "exp", "length", "char_length",
         "upper", "lower", "substr", "substring", "concat", "concat_ws", "coalesce", "nullif", "trim", "ltrim",
         "rtrim", "btrim", "replace", "regexp_replace", "regexp_match", "regexp_like", "split_part", "starts_with",
         "strpos", "lpad", "rpad", "reverse", "left", "right", "md5", "sha256", "digest", "to_hex", "date_trunc",
         "date_part", "to_timestamp", "to_timestamp_seconds", "from_unixtime", "now", "random", "greatest", "least",
         "make_array", "array_length", "arrow_typeof", "arrow_cast", "chr", "ascii", "translate", "initcap",
         "levenshtein", "uuid", "nanvl", "factorial", "gcd", "lcm", "atan2", "to_char", "to_date", "date_bin",
         "encode", "decode", "nvl", "nvl2", "overlay", "struct", "named_struct", "get_field", "unnest", "range",
         "generate_series", "cardinality", "array_repeat", "string_to_array", "pg_sleep", "version", "no_such_fn"]
AGGS = ["count", "sum", "avg", "min", "max", "stddev", "var_pop", "median", "approx_distinct", "approx_median",
        "approx_percentile_cont", "string_agg", "array_agg", "first_value", "last_value", "bool_and", "bit_xor",
        "corr", "covar_samp", "count_distinct", "regr_slope", "grouping"]
DDL = ["CREATE TABLE t (a INT)", "CREATE TABLE postgres.evil AS SELECT * FROM postgres.logs",
       "CREATE VIEW v AS SELECT 1", "CREATE SCHEMA s", "CREATE DATABASE d",
       "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
       "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION 'file:///'",
       "DROP TABLE postgres.logs", "DROP TABLE hdfs.logs", "DROP SCHEMA postgres CASCADE", "DROP VIEW IF EXISTS v",
       "INSERT INTO postgres.logs (id, level) VALUES (-1, 'EVIL')", "INSERT INTO hdfs.logs SELECT * FROM postgres.logs",
       "INSERT INTO postgres.logs SELECT * FROM postgres.logs",
       "DELETE FROM postgres.logs", "DELETE FROM hdfs.logs WHERE 1=1", "UPDATE postgres.logs SET level = 'X'",
       "TRUNCATE postgres.logs", "TRUNCATE TABLE hdfs.logs",
       "SET datafusion.execution.batch_size = 1", "SET datafusion.execution.target_partitions = 1000000",
       "SET datafusion.runtime.memory_limit = '1K'", "SET TIME ZONE 'Mars/Base'", "RESET ALL",
       "COPY postgres.logs TO '/tmp/fletch-fuzz-copy.csv'", "COPY (SELECT 1) TO '/etc/fletch-owned'",
       "ALTER TABLE postgres.logs ADD COLUMN x INT", "ALTER TABLE hdfs.logs RENAME TO y",
       "PREPARE p AS SELECT 1", "EXECUTE p", "DEALLOCATE p", "BEGIN", "COMMIT", "ROLLBACK", "START TRANSACTION",
       "GRANT ALL ON postgres.logs TO public", "VACUUM postgres.logs", "ANALYZE postgres.logs",
       "CREATE FUNCTION f() RETURNS INT AS 'SELECT 1'", "CREATE INDEX i ON postgres.logs (level)",
       "SELECT 1; DROP TABLE postgres.logs", "SELECT 1; DELETE FROM postgres.logs;",
       "EXPLAIN ANALYZE DELETE FROM postgres.logs", "WITH d AS (DELETE FROM postgres.logs RETURNING *) SELECT 1",
       "MERGE INTO postgres.logs USING hdfs.logs ON true WHEN MATCHED THEN DELETE"]
UNICODE = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x590, 0x6FF), (0x900, 0x97F), (0x3040, 0x30FF),
           (0x4E00, 0x4FFF), (0x1F300, 0x1F64F), (0x200B, 0x200F), (0x202A, 0x202E), (0x300, 0x36F),
           (0xFFF0, 0xFFFF), (0x10FFF0, 0x10FFFF), (0x1, 0x1F)]


def ustr(rng, n):
    out = []
    for _ in range(n):
        lo, hi = rng.choice(UNICODE)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def number(rng):
    return rng.choice(["0", "1", "-1", "42", "2147483647", "2147483648", "-2147483648", "9223372036854775807",
                       "-9223372036854775808", "9223372036854775808", "18446744073709551616", "1e308", "1e309",
                       "-1e-400", "0.0", "-0.0", "3.14159", ".5", "1.", "0x1F", "1_000", "1e", "00000007",
                       str(rng.randint(-10**6, 10**6)), str(rng.random() * 10**rng.randint(-20, 20)),
                       "9" * rng.randint(20, 400)])


def string_lit(rng):
    s = rng.choice(["", "a", "ERROR", "%", "_%_", "\\", "''", "'; DROP TABLE logs; --", "$1", "\\x00", "\x00",
                    "a\x00b", "\n\r\t", "%%%%%%%%%%%%%%%%%%%%%%b", "(a+)+$", "[", "(?P<x>", "\\p{Greek}",
                    "2025-13-45T25:61:61", "NaN", "Infinity", "{\"a\":", ustr(rng, rng.randint(1, 40))])
    return "'" + s.replace("'", "''") + "'"


def leaf(rng, cols=COLUMNS, alias=""):
    r = rng.random()
    if r < 0.35:
        return (alias + rng.choice(cols)) if cols else number(rng)
    if r < 0.6:
        return number(rng)
    if r < 0.8:
        return rng.choice(LABELS) if rng.random() < 0.4 else string_lit(rng)
    return rng.choice(["NULL", "TRUE", "FALSE", "now()", "CURRENT_DATE", "INTERVAL '1 day'", "'2025-01-01'::TIMESTAMP",
                       "ARRAY[1,2,3]", "[1, 'a']", "{'a': 1}", "$1", "$0", "?", "*", "DATE '2025-02-30'"])


def expr(rng, depth, cols=COLUMNS, alias=""):
    """A random expression; depth bounds the recursion (the generator's, not the server's)."""
    if depth <= 0 or rng.random() < 0.25:
        return leaf(rng, cols, alias)
    d = depth - 1
    k = rng.random()
    if k < 0.35:
        return f"({expr(rng, d, cols, alias)} {rng.choice(BINOPS)} {expr(rng, d, cols, alias)})"
    if k < 0.55:
        args = ", ".join(expr(rng, d, cols, alias) for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 5])))
        return f"{rng.choice(FUNCS)}({args})"
    if k < 0.65:
        t = rng.choice(TYPES)
        e = expr(rng, d, cols, alias)
        return f"CAST({e} AS {t})" if rng.random() < 0.5 else f"{e}::{t}"
    if k < 0.72:
        return f"CASE WHEN {expr(rng, d, cols, alias)} THEN {expr(rng, d, cols, alias)} ELSE {expr(rng, d, cols, alias)} END"
    if k < 0.8:
        items = ", ".join(leaf(rng, cols, alias) for _ in range(rng.randint(0, 6)))
        return f"{expr(rng, d, cols, alias)} {rng.choice(['IN', 'NOT IN'])} ({items})"
    if k < 0.86:
        return f"{expr(rng, d, cols, alias)} BETWEEN {leaf(rng, cols, alias)} AND {leaf(rng, cols, alias)}"
    if k < 0.92:
        return f"{rng.choice(['NOT', '-', '+', '~'])} {expr(rng, d, cols, alias)}"
    return f"{expr(rng, d, cols, alias)} IS {rng.choice(['', 'NOT '])}{rng.choice(['NULL', 'TRUE', 'FALSE', 'UNKNOWN'])}"


def select(rng):
    t = rng.choice(TABLES)
    items = ", ".join(expr(rng, rng.randint(0, 4)) for _ in range(rng.randint(1, 5)))
    where = f" WHERE {expr(rng, rng.randint(1, 5))}" if rng.random() < 0.7 else ""
    order = f" ORDER BY {expr(rng, 1)} {rng.choice(['ASC', 'DESC', ''])}" if rng.random() < 0.3 else ""
    return f"SELECT {items} FROM {t}{where}{order} LIMIT {rng.choice([0, 1, 5, 100, 200])}"


def aggregate(rng):
    t = rng.choice(TABLES)
    aggs = ", ".join(f"{rng.choice(AGGS)}({rng.choice(['', 'DISTINCT '])}{expr(rng, rng.randint(0, 2))})"
                     for _ in range(rng.randint(1, 4)))
    where = f" WHERE {expr(rng, rng.randint(0, 4))}" if rng.random() < 0.6 else ""
    g = rng.choice(["level", "service", "host", "1", "level, host", expr(rng, 2), "ROLLUP(level, host)", "CUBE(level)"])
    having = f" HAVING {expr(rng, 2)}" if rng.random() < 0.3 else ""
    return f"SELECT {g.split(',')[0] if rng.random() < 0.5 else 'count(*)'}, {aggs} FROM {t}{where} GROUP BY {g}{having} LIMIT 100"


def join(rng):
    a, b = rng.choice(TABLES), rng.choice(TABLES)
    r = rng.random()
    if r < 0.03:  # genuinely heavy: ~170 M pairs, has to hit the time budget
        on = rng.choice(["a.level = b.level", "a.host = b.host", "true"])
        return f"SELECT count(*), max(a.id + b.id) FROM {a} a JOIN {b} b ON {on}"
    on = rng.choice(["a.id = b.id", "a.id = b.id + 1", "a.id = b.id AND a.level = b.level", "a.id = -b.id",
                     f"a.id = b.id AND {expr(rng, 2, alias='a.')}", "a.id = b.id OR a.id = b.id + 7"])
    kind = rng.choice(["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN", "INNER JOIN", "LEFT SEMI JOIN", "ANTI JOIN"])
    if rng.random() < 0.5:
        return f"SELECT count(*), max(a.id), min(b.level) FROM {a} a {kind} {b} b ON {on}"
    return f"SELECT a.id, b.level, {expr(rng, 2, alias='a.')} FROM {a} a {kind} {b} b ON {on} LIMIT 50"


def subquery(rng):
    t1, t2 = rng.choice(TABLES), rng.choice(TABLES)
    return rng.choice([
        f"SELECT * FROM (SELECT id, level FROM {t1} WHERE {expr(rng, 2)}) s LIMIT 10",
        f"SELECT count(*) FROM {t1} WHERE id IN (SELECT id FROM {t2} WHERE level = {rng.choice(LABELS)})",
        f"SELECT count(*) FROM {t1} x WHERE EXISTS (SELECT 1 FROM {t2} y WHERE y.id = x.id)",
        f"WITH w AS (SELECT level, count(*) n FROM {t1} GROUP BY level) SELECT * FROM w ORDER BY n",
        f"SELECT level FROM {t1} UNION ALL SELECT level FROM {t2} LIMIT 10",
        f"SELECT level FROM {t1} INTERSECT SELECT level FROM {t2}",
        f"SELECT id, row_number() OVER (PARTITION BY level ORDER BY id) FROM {t1} LIMIT 20",
        f"SELECT (SELECT max(id) FROM {t2}) + id FROM {t1} LIMIT 3",
        f"SELECT * FROM {t1} WHERE id = (SELECT id FROM {t2})",
        "SELECT * FROM information_schema.columns", "SHOW TABLES", "SHOW COLUMNS FROM postgres.logs",
        f"EXPLAIN SELECT * FROM {t1} WHERE {expr(rng, 2)}", f"EXPLAIN ANALYZE SELECT count(*) FROM {t1}",
        f"DESCRIBE {t1}", "SELECT * FROM unnest([1,2,3])", "SELECT * FROM generate_series(1, 5)",
        "SELECT * FROM range(9223372036854775807) LIMIT 3", "VALUES (1), (2)", "SELECT",
    ])


def wide(rng):
    n = int(10 ** rng.uniform(1.7, 3.7))  # 50 .. 5000 select items
    t = rng.choice(TABLES)
    items = ", ".join(expr(rng, 1) for _ in range(n))
    return f"SELECT {items} FROM {t} LIMIT 1"


def deep(rng):
    """Nesting or chaining far beyond what a person writes: the server must either answer
    or refuse with a 400 naming a limit -- never overflow its stack."""
    n = int(10 ** rng.uniform(1.3, 4.3))  # 20 .. 20000
    t = rng.choice(TABLES)
    shape = rng.randrange(12)
    if shape == 0:
        s = "SELECT " + "(" * n + "1" + ")" * n
    elif shape == 1:
        s = "SELECT " + "abs(" * n + "-1" + ")" * n
    elif shape == 2:
        s = "SELECT 1" + "+1" * n
    elif shape == 3:
        s = f"SELECT count(*) FROM {t} WHERE " + " OR ".join(["level = 'A'"] * n)
    elif shape == 4:
        s = f"SELECT count(*) FROM {t} WHERE " + " AND ".join(["id > 0"] * n)
    elif shape == 5:
        s = "SELECT " + " || ".join(["'a'"] * n)
    elif shape == 6:
        s = "SELECT " + "NOT " * n + "TRUE"
    elif shape == 7:
        s = "SELECT " + "CASE WHEN true THEN " * n + "1" + " END" * n
    elif shape == 8:
        s = "SELECT * FROM " + "(SELECT * FROM " * n + t + ") x" * n + " LIMIT 1"
    elif shape == 9:
        s = "SELECT " + "CAST(" * n + "1" + " AS BIGINT)" * n
    elif shape == 10:
        s = "SELECT " + "-" * n + "1"
    else:
        s = f"SELECT count(*) FROM {t} WHERE id IN (" + ", ".join(str(i) for i in range(n)) + ")"
    return s[: rng.randint(len(s) // 2, len(s))] if rng.random() < 0.1 else s  # sometimes cut mid-expression


def huge_literal(rng):
    n = rng.choice([10_000, 100_000, 230_000])
    return rng.choice([
        "SELECT '" + "x" * n + "'",
        f"SELECT count(*) FROM {rng.choice(TABLES)} WHERE message = '" + "y" * n + "'",
        "SELECT " + "9" * n,
        "SELECT 0." + "1" * n,
        "SELECT '" + ustr(rng, n // 8).replace("'", "''") + "' AS u",
        f"SELECT length(repeat('ab', {rng.choice([10**6, 10**8, 2**31 - 1, 2**63 - 1])}))",
        f"SELECT length(lpad('a', {rng.choice([10**7, 2**31, -1])}))",
        f"SELECT count(*) FROM {rng.choice(TABLES)} WHERE level LIKE '" + "%a" * (n // 20) + "'",
    ])


def unicode_sql(rng):
    ident = ustr(rng, rng.randint(1, 12)).replace('"', '""')
    return rng.choice([
        f'SELECT 1 AS "{ident}"', f'SELECT "{ident}" FROM hdfs.logs', f'SELECT * FROM postgres."{ident}"',
        f'SELECT * FROM "{ident}".logs', f"SELECT {string_lit(rng)} || level FROM postgres.logs LIMIT 2",
        f"SELECT count(*) FROM postgres.logs WHERE message = '{ustr(rng, 20).replace(chr(39), '')}'",
        f"SELECT upper('{ustr(rng, 30).replace(chr(39), '')}')", f"SELECT {ident}", "SELECT 'ﬃ' ILIKE 'FFI'",
    ])


def garbage(rng):
    toks = ["SELECT", "FROM", "WHERE", "(", ")", ",", "'", '"', "*", ";", "--", "/*", "*/", "JOIN", "ON", "GROUP",
            "BY", "ORDER", "LIMIT", "OFFSET", "UNION", "postgres.logs", "hdfs.logs", "level", "1", "NULL", "=", "$1",
            "\\", "\x00", "AS", "WITH", "OVER", "::", "[", "]", "{", "}", "E'\\x", "U&'\\0000'", "$$", "`", "@", "#"]
    return " ".join(rng.choice(toks) for _ in range(rng.randint(1, 40)))


def num(rng, d):
    """Well-typed numeric expressions: they plan, so they reach execution (and its errors)."""
    if d <= 0 or rng.random() < 0.3:
        return rng.choice(["id", '"timestamp"', str(rng.randint(-1000, 1000)), "0", "2.5", "9223372036854775807"])
    k = rng.random()
    if k < 0.5:
        return f"({num(rng, d - 1)} {rng.choice('+-*/%')} {num(rng, d - 1)})"
    if k < 0.7:
        return f"{rng.choice(['abs', 'round', 'floor', 'ceil', 'sqrt', 'ln', 'exp', 'signum'])}({num(rng, d - 1)})"
    if k < 0.85:
        return f"length({txt(rng, d - 1)})"
    return f"CASE WHEN {boolean(rng, d - 1)} THEN {num(rng, d - 1)} ELSE {num(rng, d - 1)} END"


def txt(rng, d):
    if d <= 0 or rng.random() < 0.3:
        return rng.choice(["level", "service", "host", "message", "metadata", string_lit(rng)])
    a, b = txt(rng, d - 1), num(rng, d - 1)
    return rng.choice([f"({a} || {txt(rng, d - 1)})", f"upper({a})", f"reverse({a})", f"md5({a})",
                       f"substr({a}, {b}, {num(rng, d - 1)})", f"replace({a}, {string_lit(rng)}, {txt(rng, d - 1)})",
                       f"regexp_replace({a}, {string_lit(rng)}, 'x')", f"lpad({a}, {b} % 100)",
                       f"split_part({a}, ',', {b})", f"CAST({b} AS VARCHAR)", f"repeat({a}, {b} % 50)"])


def boolean(rng, d):
    if d <= 0 or rng.random() < 0.3:
        return rng.choice([f"level = {rng.choice(LABELS)}", f"id > {rng.randint(-5, 25000)}", "host IS NULL",
                           f"\"timestamp\" >= {rng.choice(['0', '1735689600', '1e300', '-1e300'])}"])
    return rng.choice([f"({boolean(rng, d - 1)} {rng.choice(['AND', 'OR'])} {boolean(rng, d - 1)})",
                       f"NOT {boolean(rng, d - 1)}", f"{num(rng, d - 1)} {rng.choice(['=', '<', '>=', '<>'])} {num(rng, d - 1)}",
                       f"{txt(rng, d - 1)} LIKE {string_lit(rng)}", f"{txt(rng, d - 1)} IN ({', '.join(LABELS[:3])})"])


def typed(rng):
    t, d = rng.choice(TABLES), rng.randint(1, 5)
    if rng.random() < 0.6:
        return f"SELECT {num(rng, d)}, {txt(rng, d)} FROM {t} WHERE {boolean(rng, d)} LIMIT {rng.choice([1, 10, 100])}"
    return f"SELECT level, sum({num(rng, d)}), max({txt(rng, d)}), count(*) FROM {t} WHERE {boolean(rng, d)} GROUP BY level"


def expr_only(rng):
    return f"SELECT {expr(rng, rng.randint(1, 7), cols=[])}"


def ddl(rng):
    return rng.choice(DDL)


SHAPES = [(typed, 25), (select, 15), (aggregate, 10), (join, 8), (subquery, 10), (wide, 3), (deep, 4),
          (huge_literal, 4), (unicode_sql, 6), (garbage, 8), (ddl, 10), (expr_only, 7)]


def sql(rng):
    """(kind, text): kind is the generator's name, 'ddl' for statements that must be refused."""
    fn = rng.choices([f for f, _ in SHAPES], weights=[w for _, w in SHAPES])[0]
    text = fn(rng)
    return fn.__name__, text
