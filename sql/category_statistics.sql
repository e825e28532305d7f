-- Category statistics in the window: per category of the catalog (`items`: item_id, categories), its
-- catalog items, the interactions with them, distinct users and items, purchases, the mean rating and
-- the category's share of all category interactions (an item in two categories counts in both).
-- Categories nobody touched are listed with zeros; events with items outside the catalog are left out.
--
-- Tables, parameters (first day, last day: 'yyyy-MM-dd', inclusive) and the de-duplication as in
-- interaction_sequences.sql; the two CTEs are the same text in all three files.
WITH windowed AS (
    SELECT
        user_id, event_id, item_id, type, value, ts, session_id,
        ROW_NUMBER() OVER (PARTITION BY user_id, event_id ORDER BY ts, item_id, type) AS copy_rank
    FROM events
    WHERE kind = 'event'
        AND dt BETWEEN ? AND ?
        AND user_id IS NOT NULL AND event_id IS NOT NULL AND item_id IS NOT NULL AND ts IS NOT NULL
        AND type IN ('view', 'click', 'add_to_cart', 'purchase', 'rating', 'skip')
),
deduplicated AS (
    SELECT user_id, event_id, item_id, type, value, ts, session_id FROM windowed WHERE copy_rank = 1
),
item_categories AS (
    SELECT DISTINCT i.item_id, c.category
    FROM items AS i
    CROSS JOIN UNNEST(i.categories) AS c (category)
),
category_items AS (
    SELECT category, COUNT(*) AS catalog_items FROM item_categories GROUP BY category
),
category_interactions AS (
    SELECT
        ic.category,
        COUNT(*) AS interactions,
        COUNT(DISTINCT x.user_id) AS users,
        COUNT(DISTINCT x.item_id) AS items_interacted,
        COUNT(CASE WHEN x.type = 'purchase' THEN 1 END) AS purchases,
        AVG(CASE WHEN x.type = 'rating' THEN x.value END) AS mean_rating
    FROM deduplicated AS x
    JOIN item_categories AS ic ON ic.item_id = x.item_id
    GROUP BY ic.category
)
SELECT
    ci.category,
    ci.catalog_items,
    COALESCE(s.interactions, 0) AS interactions,
    COALESCE(s.users, 0) AS users,
    COALESCE(s.items_interacted, 0) AS items_interacted,
    COALESCE(s.purchases, 0) AS purchases,
    s.mean_rating,
    CAST(COALESCE(s.interactions, 0) AS DOUBLE)
        / NULLIF(SUM(COALESCE(s.interactions, 0)) OVER (), 0) AS interaction_share
FROM category_items AS ci
LEFT JOIN category_interactions AS s ON s.category = ci.category
ORDER BY interactions DESC, ci.category
