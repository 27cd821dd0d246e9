-- Nexmark q10: log to file system, partitioned by day and minute (here: the partition columns).
-- From Flink's text: a materialized view instead of the filesystem table; `dateTime` is
-- date_time; Flink's DATE_FORMAT is to_char, with PostgreSQL's patterns (YYYY-MM-DD, HH24:MI).
CREATE MATERIALIZED VIEW nexmark_q10 AS
SELECT auction, bidder, price, date_time, extra,
       to_char(date_time, 'YYYY-MM-DD') AS dt, to_char(date_time, 'HH24:MI') AS hm
FROM bid;
