SELECT a.b.c, a[0], a.b[2].c AS c2, "my key", readings[-1].value AS last,
       meta['content-type'] AS ctype, *[0] AS first, (x + 1).y AS odd, a."from"
FROM 'things/+/data'
WHERE readings[count - 1].ok = true
