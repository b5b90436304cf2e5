-- One row per order line and discount.
--
-- unnest_outer keeps an event whose array is [] or null as one row with NULL
-- columns: an order without lines still has a row, so the warehouse learns
-- about its newest version. (unnest() would drop such an event.)

CREATE VIEW order_lines AS
SELECT
    order_number,
    status,
    placed_at,
    metadata.occurred_at AS occurred_at,
    customer.id AS customer_id,
    customer.address.country_code AS country_code,
    gift_note,
    unnest_outer(items) AS item
FROM events;

CREATE VIEW line_discounts AS
SELECT
    order_number,
    status,
    placed_at,
    occurred_at,
    customer_id,
    country_code,
    gift_note,
    item.sku AS sku,
    item.quantity AS quantity,
    item.unit_price.amount AS unit_price,
    item.unit_price.currency AS currency,
    unnest_outer(item.discounts) AS discount
FROM order_lines;

CREATE VIEW output AS
SELECT
    order_number,
    status,
    placed_at,
    occurred_at,
    customer_id,
    country_code,
    gift_note,
    sku,
    quantity,
    unit_price,
    currency,
    discount.code AS discount_code,
    discount.amount AS discount_amount
FROM line_discounts;
