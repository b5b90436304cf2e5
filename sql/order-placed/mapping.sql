-- One row per order line and discount.
--
-- unnest(items) drops orders whose items are [] or null (they have no lines);
-- unnest_outer(discounts) keeps a line without discounts as one row with
-- NULL discount columns.

CREATE VIEW order_lines AS
SELECT
    order_number,
    status,
    placed_at,
    customer.id AS customer_id,
    customer.address.country_code AS country_code,
    gift_note,
    unnest(items) AS item
FROM events;

CREATE VIEW line_discounts AS
SELECT
    order_number,
    status,
    placed_at,
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
