-- Nexmark q11: user sessions. Bids per bidder in each session with gaps under 10 seconds.
-- From Flink's text: a materialized view instead of the blackhole table; `dateTime` is date_time;
-- Flink's legacy GROUP BY SESSION(…) with SESSION_START/SESSION_END is written with the SESSION
-- table function (Flink's newer form), whose window_start/window_end are the session's bounds.
CREATE MATERIALIZED VIEW nexmark_q11 AS
SELECT
    B.bidder,
    count(*) as bid_count,
    window_start as starttime,
    window_end as endtime
FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) B
GROUP BY B.bidder, window_start, window_end
EMIT ON WINDOW CLOSE;
