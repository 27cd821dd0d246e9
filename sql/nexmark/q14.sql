-- Nexmark q14: calculation. Bids in a price band, labelled by time of day, with the 'c's in extra.
-- From Flink's text: a materialized view instead of the blackhole table; `dateTime` is date_time;
-- Flink's HOUR(t) is EXTRACT(HOUR FROM t), and its user-defined count_char(extra, 'c') is
-- written with built-ins.
CREATE MATERIALIZED VIEW nexmark_q14 AS
SELECT
    auction,
    bidder,
    0.908 * price as price,
    CASE
        WHEN EXTRACT(HOUR FROM date_time) >= 8 AND EXTRACT(HOUR FROM date_time) <= 18 THEN 'dayTime'
        WHEN EXTRACT(HOUR FROM date_time) <= 6 OR EXTRACT(HOUR FROM date_time) >= 20 THEN 'nightTime'
        ELSE 'otherTime'
    END AS bidTimeType,
    date_time,
    extra,
    length(extra) - length(replace(extra, 'c', '')) AS c_counts
FROM bid
WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000;
