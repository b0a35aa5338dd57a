SELECT avg(temp) FROM 'things/+/telemetry'
