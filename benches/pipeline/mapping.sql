-- The benchmark's mapping: one row per element of sizes, the same columns
-- as the DuckDB script. unnest() drops events whose sizes is [] or null.
CREATE VIEW sized AS
SELECT
    article_id,
    brand,
    model,
    version,
    available_qty,
    price.amount AS price_amount,
    price.currency AS currency,
    metadata.occurred_at AS occurred_at,
    metadata.eid AS eid,
    unnest(sizes) AS s
FROM events;

CREATE VIEW output AS
SELECT
    article_id,
    brand,
    model,
    version,
    available_qty,
    price_amount,
    currency,
    s.size AS size,
    s.qty AS qty,
    occurred_at,
    eid
FROM sized;
