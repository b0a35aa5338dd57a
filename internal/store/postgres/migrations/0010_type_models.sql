-- 0010: as SQLite migration 0017. A thing type may carry a device model
-- (JSON text, NULL: none); per-thing counters of reported values and
-- telemetry outside it.
ALTER TABLE thing_types ADD COLUMN model text;
ALTER TABLE thing_stats ADD COLUMN model_violations bigint NOT NULL DEFAULT 0;
ALTER TABLE thing_stats ADD COLUMN last_model_violation text;
ALTER TABLE thing_stats ADD COLUMN last_model_violation_at timestamptz;
