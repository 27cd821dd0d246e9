-- Run: start the server (`cargo run --release -- serve`), then
--      psql -h 127.0.0.1 -p 5488 -U eddy eddy -f examples/walkthrough.sql
-- A table fed by INSERT, a live windowed view, a window-close view, late rows and progress.

DROP MATERIALIZED VIEW IF EXISTS bids_closed, bids_per_10s;
DROP TABLE IF EXISTS bids;

CREATE TABLE bids (
    auction BIGINT NOT NULL,
    bidder  BIGINT,
    price   BIGINT,
    ts      TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
);

-- Live: a window's partial result is visible while the window is open.
CREATE MATERIALIZED VIEW bids_per_10s AS
    SELECT window_start, window_end, auction, count(*) AS n, max(price) AS top, avg(price) AS mean
    FROM TUMBLE(bids, ts, INTERVAL '10' SECOND)
    GROUP BY window_start, window_end, auction;

-- Final: a window's rows appear once the watermark passes its end, and never change.
CREATE MATERIALIZED VIEW bids_closed AS
    SELECT window_start, auction, count(*) AS n
    FROM TABLE(HOP(TABLE bids, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND))
    GROUP BY window_start, auction
    EMIT ON WINDOW CLOSE;

INSERT INTO bids VALUES (1, 7, 100, '2026-01-01 00:00:01'), (1, 8, 250, '2026-01-01 00:00:04');
\! sleep 0.5
SELECT * FROM bids_per_10s ORDER BY window_start, auction;
SELECT * FROM bids_closed ORDER BY window_start, auction;   -- nothing yet: the watermark is at 00:00:02

-- Move event time on: the watermark passes 00:00:10, the first windows close.
INSERT INTO bids VALUES (2, 9, 80, '2026-01-01 00:00:13');
-- This row is 11 s behind the watermark: late. It is counted, not silently lost.
INSERT INTO bids VALUES (1, 10, 999, '2026-01-01 00:00:00');
\! sleep 0.5
SELECT * FROM bids_closed ORDER BY window_start, auction;
SELECT name, rows_read, rows_late, watermark FROM eddy.sources;
SELECT name, emit_mode, rows, rows_late, watermark FROM eddy.views ORDER BY name;
EXPLAIN CREATE MATERIALIZED VIEW x AS
    SELECT window_start, auction, count(*) AS n FROM TUMBLE(bids, ts, INTERVAL '10' SECOND)
    GROUP BY window_start, auction;
\d bids_per_10s
