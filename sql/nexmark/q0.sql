-- Nexmark q0: pass-through. Every bid, unchanged.
-- From Flink's text: the blackhole table and INSERT INTO become a materialized view, and
-- `dateTime` is date_time. The view keeps every row (Flink's blackhole keeps none).
CREATE MATERIALIZED VIEW nexmark_q0 AS
SELECT auction, bidder, price, date_time, extra FROM bid;
