-- Placeholder: migration numbers 0005..0005 are assigned to other branches
-- of session s3; the lead replaces this file with theirs at merge.
SELECT 1;
