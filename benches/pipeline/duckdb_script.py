"""The analyst's DuckDB script of the pipeline bench: explicit schema,
QUALIFY, unnest, COPY. Prints the rows written.

    python3 duckdb_script.py compact|flatten INPUT.ndjson TARGET csv|parquet THREADS
"""
import sys

import duckdb

shape, source_file, target, file_format, threads = sys.argv[1:6]
source = {
    "compact": "(SELECT * FROM events QUALIFY row_number() OVER "
    "(PARTITION BY article_id ORDER BY version DESC) = 1)",
    "flatten": "events",
}[shape]
copy_format = {"csv": "csv, HEADER true", "parquet": "parquet"}[file_format]

con = duckdb.connect()
con.execute(f"SET threads = {int(threads)}")
con.execute("SET enable_progress_bar = false")
con.execute(f"""
CREATE VIEW events AS SELECT * FROM read_json('{source_file}', format = 'newline_delimited', columns = {{
    metadata: 'STRUCT(eid VARCHAR, occurred_at VARCHAR)', article_id: 'BIGINT', brand: 'VARCHAR',
    model: 'VARCHAR', version: 'BIGINT', available_qty: 'INTEGER',
    price: 'STRUCT(amount DECIMAL(12,2), currency VARCHAR)', sizes: 'STRUCT(size VARCHAR, qty INTEGER)[]'}})
""")
rows = con.execute(f"""
COPY (
    SELECT article_id, brand, model, version, available_qty, price.amount AS price_amount,
           price.currency AS currency, s.size AS size, s.qty AS qty,
           metadata.occurred_at AS occurred_at, metadata.eid AS eid
    FROM (SELECT *, unnest(sizes) AS s FROM {source})
) TO '{target}' (FORMAT {copy_format})
""").fetchall()
print(rows[0][0])
