-- Nexmark q14: calculation. Bids in a price band, labelled by time of day, with the 'c's in extra.
-- Flink's text, with its user-defined count_char (a Java class there) and its HOUR(t) written as
-- SQL functions; changed only to a materialized view instead of the blackhole table and
-- `dateTime` to date_time.
CREATE OR REPLACE FUNCTION count_char(s VARCHAR, c VARCHAR) RETURNS BIGINT LANGUAGE sql IMMUTABLE
AS $$ SELECT length(s) - length(replace(s, c, '')) $$;

CREATE OR REPLACE FUNCTION hour(t TIMESTAMP) RETURNS INT LANGUAGE sql IMMUTABLE
AS $$ SELECT EXTRACT(HOUR FROM t) $$;

CREATE MATERIALIZED VIEW nexmark_q14 AS
SELECT
    auction,
    bidder,
    0.908 * price as price,
    CASE
        WHEN HOUR(date_time) >= 8 AND HOUR(date_time) <= 18 THEN 'dayTime'
        WHEN HOUR(date_time) <= 6 OR HOUR(date_time) >= 20 THEN 'nightTime'
        ELSE 'otherTime'
    END AS bidTimeType,
    date_time,
    extra,
    count_char(extra, 'c') AS c_counts
FROM bid
WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000;
