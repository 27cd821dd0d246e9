-- Nexmark q3: local item suggestion. Who sells in category 10 in Oregon, Idaho or California?
-- From Flink's text: a materialized view instead of the blackhole table; a regular join keeps its
-- rows for `state_ttl` (eddy refuses an unbounded join); and the states are lowercase, as the
-- generator writes them (Flink's 'OR', 'ID', 'CA' match nothing).
CREATE MATERIALIZED VIEW nexmark_q3 WITH (state_ttl = '1 hour') AS
SELECT
    P.name, P.city, P.state, A.id
FROM
    auction AS A INNER JOIN person AS P on A.seller = P.id
WHERE
    A.category = 10 and (P.state = 'or' OR P.state = 'id' OR P.state = 'ca');
