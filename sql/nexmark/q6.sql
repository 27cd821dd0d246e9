-- Nexmark q6 (average selling price by seller) in Flink's text: per seller, the average of the
-- winning bids of their last 10 closed auctions (the current one and the 10 before it). The
-- winning bid per auction is a Top-N over the interval join of bids with their auction; the
-- average is an OVER window over that updating result (Flink cannot run it: its OVER operator
-- does not take retractions). Changed to a materialized view instead of the blackhole table,
-- `dateTime` to date_time, the average named avg_price as the sink table names it, and the
-- ranking in a subquery of its own: Flink's text filters on `rownum` in the SELECT that defines
-- it, which PostgreSQL (and the SQL standard) refuse — "column rownum does not exist".
CREATE MATERIALIZED VIEW nexmark_q6 AS
SELECT
    Q.seller,
    AVG(Q.price) OVER
        (PARTITION BY Q.seller ORDER BY Q.date_time ROWS BETWEEN 10 PRECEDING AND CURRENT ROW) AS avg_price
FROM (
    SELECT * FROM (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY A.id, A.seller ORDER BY B.price DESC) AS rownum
        FROM (SELECT A.id, A.seller, B.price, B.date_time
            FROM auction AS A,
                bid AS B
            WHERE A.id = B.auction
                and B.date_time between A.date_time and A.expires))
    WHERE rownum <= 1
) AS Q;
