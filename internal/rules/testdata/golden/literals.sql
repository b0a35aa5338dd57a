SELECT 'it''s', -5, - 5, -(5), 1.0, 1e3, 2.5E-7, 9223372036854775807, -9223372036854775808,
       TRUE, false, NULL, - -a AS nn, a - -1 AS d
FROM 'a/b'; -- a trailing semicolon is allowed
