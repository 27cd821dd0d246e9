-- Nexmark q20: bids with their auction's details, for auctions in category 10.
-- From Flink's text: a materialized view instead of the blackhole table; the generator's column
-- names (date_time, item_name, initial_bid); the two date_time and extra columns get distinct
-- names; and the regular join keeps its rows for `state_ttl`.
CREATE MATERIALIZED VIEW nexmark_q20 WITH (state_ttl = '1 hour') AS
SELECT
    auction, bidder, price, channel, url, B.date_time, B.extra,
    item_name, description, initial_bid, reserve, A.date_time AS auction_date_time, expires,
    seller, category, A.extra AS auction_extra
FROM
    bid AS B INNER JOIN auction AS A on B.auction = A.id
WHERE A.category = 10;
