SELECT median(temp) FROM 'things/+/telemetry'
