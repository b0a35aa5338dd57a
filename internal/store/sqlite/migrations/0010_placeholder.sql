-- Placeholder: migration numbers 0010..0012 are assigned to other branches
-- of session s3; the lead replaces this file with theirs at merge.
SELECT 1;
