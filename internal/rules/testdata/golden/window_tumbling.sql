SELECT avg(temp) AS avgTemp, max(temp) AS maxTemp, count(*) AS n, topic(2) AS device,
  window_start() AS start, window_end() AS "end"
FROM 'things/+/telemetry' WHERE temp IS NOT NULL
group by thing, tumbling(1m) having avg(temp) > 30
