-- Nexmark q16: channel statistics per day.
-- From Flink's text: a materialized view instead of the blackhole table; `dateTime` is date_time;
-- Flink's DATE_FORMAT is to_char, with PostgreSQL's patterns (YYYY-MM-DD).
CREATE MATERIALIZED VIEW nexmark_q16 AS
SELECT
    channel,
    to_char(date_time, 'YYYY-MM-DD') as day,
    max(to_char(date_time, 'HH24:MI')) as minute,
    count(*) AS total_bids,
    count(*) filter (where price < 10000) AS rank1_bids,
    count(*) filter (where price >= 10000 and price < 1000000) AS rank2_bids,
    count(*) filter (where price >= 1000000) AS rank3_bids,
    count(distinct bidder) AS total_bidders,
    count(distinct bidder) filter (where price < 10000) AS rank1_bidders,
    count(distinct bidder) filter (where price >= 10000 and price < 1000000) AS rank2_bidders,
    count(distinct bidder) filter (where price >= 1000000) AS rank3_bidders,
    count(distinct auction) AS total_auctions,
    count(distinct auction) filter (where price < 10000) AS rank1_auctions,
    count(distinct auction) filter (where price >= 10000 and price < 1000000) AS rank2_auctions,
    count(distinct auction) filter (where price >= 1000000) AS rank3_auctions
FROM bid
GROUP BY channel, to_char(date_time, 'YYYY-MM-DD');
