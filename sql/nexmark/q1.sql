-- Nexmark q1: currency conversion. Each bid's price from dollars to euros.
-- From Flink's text: a materialized view instead of the blackhole table; `dateTime` is date_time.
CREATE MATERIALIZED VIEW nexmark_q1 AS
SELECT
    auction,
    bidder,
    0.908 * price as price, -- convert dollar to euro
    date_time,
    extra
FROM bid;
