SELECT temp, hum, topic(2) AS device WHERE temp > 50
