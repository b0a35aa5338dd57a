SELECT round(avg(temp * 1.8 + 32), 1) AS f, min(temp), sum(kwh) AS total, count(temp) AS readings
FROM 'things/+/telemetry'
GROUP BY topic(2), SLIDING(300s, 30s)
