-- Nexmark q7: highest bid. The bids with the highest price of each 10-second window.
-- From Flink's text: a materialized view instead of the blackhole table; `dateTime` is date_time.
CREATE MATERIALIZED VIEW nexmark_q7 AS
SELECT B.auction, B.price, B.bidder, B.date_time, B.extra
from bid B
JOIN (
  SELECT MAX(price) AS maxprice, window_end as date_time
  FROM TABLE(
          TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY window_start, window_end
) B1
ON B.price = B1.maxprice
WHERE B.date_time BETWEEN B1.date_time  - INTERVAL '10' SECOND AND B1.date_time;
