-- Nexmark q12: processing-time windows. How many bids each bidder makes in each 10-second window
-- of processing time. Flink's text, with its view `B AS SELECT *, PROCTIME() AS p_time FROM bid`
-- written inline as DESCRIPTOR(PROCTIME()) (the window input then has the arrival time as a
-- `proctime` column, as B has p_time), and a materialized view instead of the blackhole table.
CREATE MATERIALIZED VIEW nexmark_q12 AS
SELECT
    bidder,
    count(*) as bid_count,
    window_start AS starttime,
    window_end AS endtime
FROM TABLE(
        TUMBLE(TABLE bid, DESCRIPTOR(PROCTIME()), INTERVAL '10' SECOND))
GROUP BY bidder, window_start, window_end;
