-- Interaction sequences: every user's events in the window, de-duplicated, in time order (one row per
-- step; step 1 is the user's oldest event in the window).
--
-- One SQL for DuckDB (locally, dataio.archive) and Athena (Trino): the tables are `events` (the archive:
-- the stream record's columns plus the partitions kind and dt) and, for category statistics, `items`.
-- Two positional parameters, in this order: the first and the last day of the window, inclusive, as
-- 'yyyy-MM-dd' text (dt is the UTC day of ts). Records of another kind (impressions), rows that are not
-- events (missing ids or ts, an unknown type) and repeated copies of an event (same user_id and
-- event_id: a client or stream retry) are left out; of the copies the one with the earliest ts is kept.
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
    user_id,
    ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY ts, event_id) AS step,
    event_id,
    item_id,
    type,
    value,
    ts,
    session_id
FROM deduplicated
ORDER BY user_id, step
