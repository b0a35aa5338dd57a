SELECT * FROM 'things/#/telemetry'
