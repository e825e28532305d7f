-- Click-through by reason (model, explore, popular, cold_start, promoted, ...): per experiment, variant
-- and the reason an item was shown, the items shown, clicked and converted.
--
-- Tables: impressions (one row per ranked answer: the Glue table of the same name, locally the view
-- evaluation.experiment_report.connect makes over events/kind=impression/) and events (the archive).
-- Five positional parameters: the impressions' first and last day, the events' first and last day
-- ('yyyy-MM-dd', inclusive; give the events a day more so a late click still counts) and the
-- attribution window in milliseconds. An event is attributed to an impression when it carries the
-- impression's recommendation_id, comes from the same user, names an item the list showed and happens
-- within the window after the impression: a click counts as a click on that position, an add_to_cart or
-- purchase as a conversion. Impressions are de-duplicated by recommendation_id, events by
-- (user_id, event_id) (Firehose delivers at least once). The CTEs are the same text in every
-- attribution_*.sql (a test keeps them so).
WITH impression_copies AS (
    SELECT
        recommendation_id, user_id, experiment, variant, model_version, source, degraded, latency_ms, ts, items,
        ROW_NUMBER() OVER (PARTITION BY recommendation_id ORDER BY ts) AS copy_rank
    FROM impressions
    WHERE dt BETWEEN ? AND ?
        AND recommendation_id IS NOT NULL AND user_id IS NOT NULL AND ts IS NOT NULL AND items IS NOT NULL
),
lists AS (
    SELECT recommendation_id, user_id, experiment, variant, model_version, source, degraded, latency_ms, ts, items
    FROM impression_copies
    WHERE copy_rank = 1
),
shown AS (
    SELECT
        lists.recommendation_id, lists.user_id, lists.experiment, lists.variant, lists.model_version, lists.ts,
        shown_item.entry[1] AS item_id, shown_item.entry[2] AS reason, shown_item.position
    FROM lists
    CROSS JOIN UNNEST(lists.items) WITH ORDINALITY AS shown_item(entry, position)
),
event_copies AS (
    SELECT
        user_id, item_id, type, ts, recommendation_id,
        ROW_NUMBER() OVER (PARTITION BY user_id, event_id ORDER BY ts, item_id, type) AS copy_rank
    FROM events
    WHERE kind = 'event'
        AND dt BETWEEN ? AND ?
        AND recommendation_id IS NOT NULL AND event_id IS NOT NULL AND item_id IS NOT NULL AND ts IS NOT NULL
        AND type IN ('click', 'add_to_cart', 'purchase')
),
responses AS (
    SELECT
        shown.recommendation_id, shown.position,
        MAX(CASE WHEN event_copies.type = 'click' THEN 1 ELSE 0 END) AS clicked,
        MAX(CASE WHEN event_copies.type IN ('add_to_cart', 'purchase') THEN 1 ELSE 0 END) AS converted
    FROM shown
    JOIN event_copies
        ON event_copies.copy_rank = 1
        AND event_copies.recommendation_id = shown.recommendation_id
        AND event_copies.user_id = shown.user_id
        AND event_copies.item_id = shown.item_id
        AND event_copies.ts BETWEEN shown.ts AND shown.ts + ?
    GROUP BY shown.recommendation_id, shown.position
),
outcomes AS (
    SELECT
        shown.recommendation_id, shown.experiment, shown.variant, shown.model_version, shown.item_id,
        shown.reason, shown.position,
        COALESCE(responses.clicked, 0) AS clicked, COALESCE(responses.converted, 0) AS converted
    FROM shown
    LEFT JOIN responses
        ON responses.recommendation_id = shown.recommendation_id AND responses.position = shown.position
)
SELECT
    experiment, variant, reason,
    COUNT(*) AS shown,
    SUM(clicked) AS clicks,
    CAST(SUM(clicked) AS DOUBLE) / COUNT(*) AS ctr,
    SUM(converted) AS conversions,
    CAST(SUM(converted) AS DOUBLE) / COUNT(*) AS conversion_rate
FROM outcomes
GROUP BY experiment, variant, reason
ORDER BY experiment, variant, reason
