-- Run: start the server (`cargo run --release -- serve`), then
--      psql -h 127.0.0.1 -p 5488 -U eddy eddy -f examples/clicks_datagen.sql
-- A generator source (no external service), an always-updating view and a hopping window.

DROP MATERIALIZED VIEW IF EXISTS clicks_per_user, top_users;
DROP SOURCE IF EXISTS clicks;

CREATE SOURCE clicks (
    id      BIGINT NOT NULL,
    user_id INT,
    page    VARCHAR,
    ts      TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (
    connector = 'datagen', rows_per_second = '2000', seed = '7',
    'fields.id.kind' = 'sequence', 'fields.id.start' = '1',
    'fields.user_id.min' = '1', 'fields.user_id.max' = '50',
    'fields.page.length' = '3',
    'fields.ts.max_past' = '500ms'
);

CREATE MATERIALIZED VIEW clicks_per_user AS
    SELECT window_start, user_id, count(*) AS clicks
    FROM HOP(clicks, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
    GROUP BY window_start, user_id
    EMIT ON WINDOW CLOSE;

CREATE MATERIALIZED VIEW top_users AS
    SELECT user_id, count(*) AS clicks, approx_distinct(page) AS pages
    FROM clicks GROUP BY user_id;

\! sleep 4
SELECT * FROM top_users ORDER BY clicks DESC LIMIT 5;
SELECT window_start, count(*) AS users, sum(clicks) AS clicks
    FROM clicks_per_user GROUP BY window_start ORDER BY window_start DESC LIMIT 3;
SELECT * FROM eddy.sources;
