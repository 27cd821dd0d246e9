-- Nexmark q22: get URL directories.
-- From Flink's text: a materialized view instead of the blackhole table; Flink's
-- SPLIT_INDEX(s, '/', i) (0-based) is split_part(s, '/', i + 1).
CREATE MATERIALIZED VIEW nexmark_q22 AS
SELECT
    auction, bidder, price, channel,
    split_part(url, '/', 4) as dir1,
    split_part(url, '/', 5) as dir2,
    split_part(url, '/', 6) as dir3 FROM bid;
