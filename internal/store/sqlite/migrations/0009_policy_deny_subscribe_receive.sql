-- Policies: a deny on "subscribe" now refuses SUBSCRIBE requests for the
-- filter as written and no longer implies a deny on "receive" (issue 11:
-- "everything except X", as AWS IoT). Before, it also hid the matching
-- topics from every subscriber. So that stored policies keep hiding what
-- they hid, "receive" is added to every deny statement that has
-- "subscribe" and not "receive". Other statements, their order and the
-- rest of each document are kept (the JSON is stored minified).
UPDATE policies
SET document = json_set(document, '$.statements', json((
    SELECT json_group_array(
        CASE
            WHEN json_extract(s.value, '$.effect') = 'deny'
             AND EXISTS (SELECT 1 FROM json_each(s.value, '$.actions') AS a WHERE a.value = 'subscribe')
             AND NOT EXISTS (SELECT 1 FROM json_each(s.value, '$.actions') AS a WHERE a.value = 'receive')
            THEN json_insert(s.value, '$.actions[#]', 'receive')
            ELSE json(s.value)
        END
        ORDER BY s.key)
    FROM json_each(policies.document, '$.statements') AS s
)))
WHERE json_valid(document)
  AND json_type(document, '$.statements') = 'array'
  AND EXISTS (
    SELECT 1 FROM json_each(policies.document, '$.statements') AS s
    WHERE json_extract(s.value, '$.effect') = 'deny'
      AND json_type(s.value, '$.actions') = 'array'
      AND EXISTS (SELECT 1 FROM json_each(s.value, '$.actions') AS a WHERE a.value = 'subscribe')
      AND NOT EXISTS (SELECT 1 FROM json_each(s.value, '$.actions') AS a WHERE a.value = 'receive')
  );
