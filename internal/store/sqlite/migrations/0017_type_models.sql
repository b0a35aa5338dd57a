-- 0017: device models (internal/devicemodel). A thing type may carry a
-- model (JSON, NULL: none); per-thing counters of reported values and
-- telemetry outside it (flagged, not refused).
ALTER TABLE thing_types ADD COLUMN model TEXT;
ALTER TABLE thing_stats ADD COLUMN model_violations INTEGER NOT NULL DEFAULT 0;
ALTER TABLE thing_stats ADD COLUMN last_model_violation TEXT;
ALTER TABLE thing_stats ADD COLUMN last_model_violation_at INTEGER;
