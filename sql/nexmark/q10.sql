-- Nexmark q10: log to file system, partitioned by day and minute (here: the partition columns).
-- From Flink's text: a materialized view instead of the filesystem table; `dateTime` is
-- date_time; Flink's DATE_FORMAT is DataFusion's to_char, which takes chrono's format codes.
CREATE MATERIALIZED VIEW nexmark_q10 AS
SELECT auction, bidder, price, date_time, extra,
       to_char(date_time, '%Y-%m-%d') AS dt, to_char(date_time, '%H:%M') AS hm
FROM bid;
