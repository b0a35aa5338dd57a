select concat(thing(), ':', clientid()) as id, round(temp * 1.8 + 32, 1) as f,
       upper(substring(name, 1, 3)) as code, encode(*, 'base64') as raw, payload() as text,
       coalesce(hum, humidity, -1) as h, newuuid() as uuid, topic() as t
from '$aws/things/+/shadow/update'
where startswith(topic(3), 'sensor') and length(name) between 1 and 64
