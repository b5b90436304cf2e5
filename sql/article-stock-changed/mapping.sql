-- One row per article: its latest stock level (MAIN), or a late stock level
-- that arrived after a newer one (CORRECTION).
CREATE VIEW output AS
SELECT
    article_id,
    brand,
    model,
    version,
    available_qty,
    metadata.occurred_at AS occurred_at,
    metadata.eid AS eid
FROM events;
