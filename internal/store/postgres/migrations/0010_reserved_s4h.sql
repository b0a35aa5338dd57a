-- 0010: placeholder so that this branch (s4/h) numbers its own migration as
-- assigned (0012) without a gap; the migration of another branch takes
-- this number at merge, and this file is deleted then.
SELECT 1;
