SELECT CAST(level AS INTEGER) AS level, CAST(on AS boolean) AS on
FROM 'devices/+/events'
WHERE kind IN ('alarm', 'fault') AND code NOT IN (0, 1, 2) AND CAST(level AS float) NOT BETWEEN 0 AND 0.5
