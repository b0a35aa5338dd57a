-- Precedence: NOT binds tighter than AND, AND tighter than OR;
-- comparisons bind tighter than NOT; * / % tighter than + -.
SELECT a + b * c - d % 2 AS x, -a.b[0] * 2 AS y, (a + b) * c AS z
FROM 'sensors/#'
WHERE NOT a = 1 AND b > 2 OR c <= 3 * 4 AND d IS NOT NULL OR NOT (e <> 5 OR f)
