-- Nexmark q19: the ten highest bids of each auction.
-- From Flink's text: a materialized view instead of the blackhole table.
CREATE MATERIALIZED VIEW nexmark_q19 AS
SELECT * FROM
(SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rank_number FROM bid)
WHERE rank_number <= 10;
