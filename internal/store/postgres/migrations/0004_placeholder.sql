-- Placeholder: migration numbers 0004..0005 are assigned to other branches
-- of session s3; the lead replaces this file with theirs at merge.
SELECT 1;
