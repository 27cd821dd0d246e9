-- The Meetup RSVP stream through Kafka: a typed source with a data contract, a view over nested
-- fields with HOP windows and UNNEST, the dead letters, and a sink back to Kafka.
--
-- Run:
--   cargo run --release -- serve --embedded-kafka        # prints bootstrap.servers = HOST:PORT
--   kcat -b HOST:PORT -t meetup-raw-rsvps -P -l sql/data/meetup/rsvps.jsonl
--   psql -h 127.0.0.1 -p 5488 -U eddy eddy -v broker=HOST:PORT -f examples/kafka_meetup.sql
-- (With a real Kafka, pass its address as broker.)

CREATE SOURCE rsvps (
    rsvp_id   BIGINT NOT NULL,
    response  VARCHAR CHECK (response IN ('yes', 'no')),
    guests    INT CHECK (guests >= 0),
    mtime     TIMESTAMP NOT NULL,
    member    STRUCT<member_id BIGINT, member_name VARCHAR>,
    "group"   STRUCT<group_city VARCHAR, group_country VARCHAR,
                     group_topics STRUCT<urlkey VARCHAR, topic_name VARCHAR>[]>,
    WATERMARK FOR mtime AS mtime - INTERVAL '5' SECOND
) INCLUDE partition AS kafka_partition, offset AS kafka_offset, timestamp AS kafka_ts, key AS kafka_key
WITH (connector = 'kafka', topic = 'meetup-raw-rsvps', 'properties.bootstrap.server' = :'broker',
      'scan.startup.mode' = 'earliest', format = 'json', on_error = 'dead_letter');

CREATE MATERIALIZED VIEW topics_per_city AS
    SELECT window_start, "group".group_city AS city, t.topic_name, count(*) AS rsvps
    FROM HOP(rsvps, mtime, INTERVAL '1' MINUTE, INTERVAL '10' MINUTE),
         UNNEST("group".group_topics) AS t
    GROUP BY 1, 2, 3;

CREATE MATERIALIZED VIEW rsvps_total AS SELECT count(*) AS rsvps, sum(guests) AS guests FROM rsvps;

CREATE SINK city_counts_out FROM topics_per_city
    WITH (connector = 'kafka', topic = 'topics-per-city', 'properties.bootstrap.server' = :'broker',
          format = 'json');

\! sleep 2

SELECT * FROM rsvps_total;                                   -- 1960 rows once all are read
SELECT city, topic_name, sum(rsvps) AS rsvps FROM topics_per_city
    GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5;
SELECT "offset", "partition", error FROM eddy.dead_letters ORDER BY id LIMIT 10;   -- 40 in all
SELECT name, status, rows_read, rows_rejected, rows_late, watermark, lag FROM eddy.sources;
SELECT * FROM eddy.sinks;
