-- Nexmark q18: each bidder's last bid on each auction.
-- From Flink's text: a materialized view instead of the blackhole table; `dateTime` is date_time.
CREATE MATERIALIZED VIEW nexmark_q18 AS
SELECT auction, bidder, price, channel, url, date_time, extra
 FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY date_time DESC) AS rank_number
       FROM bid)
 WHERE rank_number <= 1;
