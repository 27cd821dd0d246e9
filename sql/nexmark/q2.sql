-- Nexmark q2: selection. The bids of every 123rd auction.
-- From Flink's text: a materialized view instead of the blackhole table.
CREATE MATERIALIZED VIEW nexmark_q2 AS
SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0;
