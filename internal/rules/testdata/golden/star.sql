SELECT *, topic(2) AS device FROM 'things/#'
