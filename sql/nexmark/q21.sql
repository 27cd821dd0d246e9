-- Nexmark q21: add a channel id.
-- From Flink's text: a materialized view instead of the blackhole table; Flink's
-- REGEXP_EXTRACT(s, p, 2) is regexp_match(s, p)[2].
CREATE MATERIALIZED VIEW nexmark_q21 AS
SELECT
    auction, bidder, price, channel,
    CASE
        WHEN lower(channel) = 'apple' THEN '0'
        WHEN lower(channel) = 'google' THEN '1'
        WHEN lower(channel) = 'facebook' THEN '2'
        WHEN lower(channel) = 'baidu' THEN '3'
        ELSE (regexp_match(url, '(&|^)channel_id=([^&]*)'))[2]
        END
    AS channel_id FROM bid
    where (regexp_match(url, '(&|^)channel_id=([^&]*)'))[2] is not null or
          lower(channel) in ('apple', 'google', 'facebook', 'baidu');
