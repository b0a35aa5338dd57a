// An MQTT.js v5 client, driven by mqttjs_test.go: it connects with the
// credentials in the environment, subscribes to its thing's topics,
// publishes QoS 1 messages with user properties (the second and third on
// a topic alias, which the server advertises), and prints one JSON line
// with what it saw. It exits 1 if the connection closes or errors first.
import mqtt from "mqtt";

const { MQTT_URL, MQTT_USER, MQTT_PASS, MQTT_CLIENT_ID } = process.env;
const topic = `things/${MQTT_USER}/data`;
const want = 3;
const out = { ok: false, connack: null, pubacks: [], received: [], errors: [] };
let done = false;

function finish(ok) {
  if (done) return;
  done = true;
  out.ok = ok;
  console.log(JSON.stringify(out));
  client.end(true, () => process.exit(ok ? 0 : 1));
  setTimeout(() => process.exit(ok ? 0 : 1), 1000).unref();
}

const client = mqtt.connect(MQTT_URL, {
  protocolVersion: 5,
  clientId: MQTT_CLIENT_ID,
  username: MQTT_USER,
  password: MQTT_PASS,
  clean: true,
  reconnectPeriod: 0,
  connectTimeout: 5000,
  autoUseTopicAlias: true,
});

setTimeout(() => { out.errors.push("timed out"); finish(false); }, 15000).unref();

client.on("error", (err) => { out.errors.push(`error: ${err.message}`); finish(false); });
client.on("close", () => { if (!done) { out.errors.push("connection closed"); finish(false); } });
client.on("disconnect", (pk) => { out.errors.push(`DISCONNECT ${pk.reasonCode}`); });

client.on("message", (t, payload, pk) => {
  out.received.push({ topic: t, payload: payload.toString(), user: pk.properties?.userProperties ?? null });
  check();
});

function check() {
  if (out.pubacks.length === want && out.received.length === want) finish(true);
}

client.on("connect", (connack) => {
  out.connack = { reasonCode: connack.reasonCode ?? 0, properties: connack.properties ?? {} };
  client.subscribe(`things/${MQTT_USER}/#`, { qos: 1 }, (err, granted) => {
    if (err || granted[0].qos !== 1) {
      out.errors.push(`subscribe: ${err?.message ?? JSON.stringify(granted)}`);
      finish(false);
      return;
    }
    for (let i = 0; i < want; i++) {
      client.publish(topic, `m${i}`, { qos: 1, properties: { userProperties: { trace: `t${i}` } } }, (err, pk) => {
        if (err) { out.errors.push(`publish m${i}: ${err.message}`); finish(false); return; }
        out.pubacks.push({ reasonCode: pk?.reasonCode ?? 0 });
        check();
      });
    }
  });
});
