-- 0010 (assigned 0014 for the s3 merge): a symmetricKey credential (Azure
-- IoT Hub SAS tokens) keeps its key, sealed with the data directory's
-- seal.key (internal/seal) by the registry; '' for other credentials.
ALTER TABLE credentials ADD COLUMN sealed_key TEXT NOT NULL DEFAULT '';
