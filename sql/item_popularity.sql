-- Item popularity in the window: interactions and distinct users per item, by event type, with the mean
-- rating and the first and last event time (epoch ms). Most interactions first.
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
)
SELECT
    item_id,
    COUNT(*) AS interactions,
    COUNT(DISTINCT user_id) AS users,
    COUNT(CASE WHEN type = 'view' THEN 1 END) AS views,
    COUNT(CASE WHEN type = 'click' THEN 1 END) AS clicks,
    COUNT(CASE WHEN type = 'add_to_cart' THEN 1 END) AS add_to_carts,
    COUNT(CASE WHEN type = 'purchase' THEN 1 END) AS purchases,
    COUNT(CASE WHEN type = 'rating' THEN 1 END) AS ratings,
    COUNT(CASE WHEN type = 'skip' THEN 1 END) AS skips,
    AVG(CASE WHEN type = 'rating' THEN value END) AS mean_rating,
    MIN(ts) AS first_ts,
    MAX(ts) AS last_ts
FROM deduplicated
GROUP BY item_id
ORDER BY interactions DESC, item_id
