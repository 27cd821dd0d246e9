-- Nexmark q9: winning bids. Each auction with its highest bid placed before it expired.
-- From Flink's text: a materialized view instead of the blackhole table; date_time, item_name and
-- initial_bid are the generator's column names (Flink's `dateTime`, itemName, initialBid).
CREATE MATERIALIZED VIEW nexmark_q9 AS
SELECT
    id, item_name, description, initial_bid, reserve, date_time, expires, seller, category, extra,
    auction, bidder, price, bid_date_time, bid_extra
FROM (
   SELECT A.*, B.auction, B.bidder, B.price, B.date_time AS bid_date_time, B.extra AS bid_extra,
     ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.date_time ASC) AS rownum
   FROM auction A, bid B
   WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
)
WHERE rownum <= 1;
