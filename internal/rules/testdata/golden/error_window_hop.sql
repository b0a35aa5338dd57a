SELECT avg(temp) FROM 'things/+/telemetry' GROUP BY thing, SLIDING(5m, 7s)
