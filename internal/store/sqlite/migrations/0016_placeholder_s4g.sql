-- Placeholder (branch s4/g only): migrations must run without gaps and this
-- branch was assigned 0018_provisioning.sql; the lead drops this file when
-- merging the branches that own 0016.
SELECT 1;
