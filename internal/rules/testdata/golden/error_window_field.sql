SELECT temp, avg(temp) AS a FROM 'things/+/telemetry' GROUP BY thing, TUMBLING(1m)
