-- Nexmark q13: bounded side input join. Each bid enriched from a side table, joined as it is when
-- the bid is processed. Flink's text, with the side input an upsert table filled from
-- generate_series (Flink reads it from a CSV file) and a materialized view instead of the
-- blackhole table; `dateTime` is date_time, `value` the column name.
CREATE TABLE IF NOT EXISTS side_input ("key" BIGINT, value VARCHAR, PRIMARY KEY ("key"));
INSERT INTO side_input SELECT value, 'v' || CAST(value AS VARCHAR) FROM generate_series(0, 9999);

CREATE MATERIALIZED VIEW nexmark_q13 AS
SELECT
    B.auction,
    B.bidder,
    B.price,
    B.date_time,
    S.value
FROM (SELECT *, PROCTIME() as p_time FROM bid) B
JOIN side_input FOR SYSTEM_TIME AS OF B.p_time AS S
ON mod(B.auction, 10000) = S.key;
