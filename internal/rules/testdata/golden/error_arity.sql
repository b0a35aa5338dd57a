SELECT temp
FROM 'things/+/telemetry'
WHERE round(temp, 1, 2) > 5
