-- Nexmark q5: hot items. The auctions with the most bids in each 10-second window, every 2 seconds.
-- From Flink's text: a materialized view instead of the blackhole table; `dateTime` is date_time;
-- and "the auctions whose count equals the window's maximum count" is written as a rank over the
-- window's counts (RANK() = 1 keeps ties, as Flink's `num >= maxn` does). Flink's form (a join of
-- the counts with a maximum over a view of counts) is refused: eddy cannot yet bound an aggregate
-- grouped by another view's window bounds, so its state would grow without end.
CREATE MATERIALIZED VIEW nexmark_q5 AS
SELECT auction, num FROM (
  SELECT
    auction,
    count(*) AS num,
    window_start AS starttime,
    window_end AS endtime,
    RANK() OVER (PARTITION BY window_start, window_end ORDER BY count(*) DESC) AS rownum
  FROM TABLE(
          HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
  GROUP BY auction, window_start, window_end
) WHERE rownum <= 1
EMIT ON WINDOW CLOSE;
