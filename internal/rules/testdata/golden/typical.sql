SELECT temp, hum, topic(2) AS device, timestamp() AS ts FROM 'things/+/telemetry' WHERE temp > 50
