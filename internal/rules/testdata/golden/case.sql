SELECT
  CASE WHEN temp > 30 THEN 'hot' WHEN temp > 20 THEN 'warm' ELSE 'cold' END AS level,
  CASE status WHEN 0 THEN 'ok' WHEN 1 THEN 'warning' END AS state
FROM 'things/+/telemetry'
