// Sends telemetry with an application property through the unmodified
// Azure IoT device SDK, as a field device would, then disconnects. Run by
// fleet_test.go with MOTE_CONNECTION_STRING, MOTE_CA_FILE and MOTE_COUNT;
// prints one JSON line per step and exits 0 when all were sent.
'use strict';
const fs = require('fs');
const { Client, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

function step(name, extra) {
  process.stdout.write(JSON.stringify(Object.assign({ step: name }, extra || {})) + '\n');
}
function fail(where, err) {
  step('error', { where, error: String(err && (err.message || err)) });
  process.exit(1);
}
setTimeout(() => fail('timeout', 'the script ran for 30s'), 30000).unref();

const client = Client.fromConnectionString(process.env.MOTE_CONNECTION_STRING, Mqtt);
client.setOptions({ ca: fs.readFileSync(process.env.MOTE_CA_FILE, 'utf8') }, (err) => {
  if (err) fail('setOptions', err);
});
client.on('error', (err) => fail('client', err));

async function main() {
  await client.open();
  step('connected');
  const n = Number(process.env.MOTE_COUNT || '3');
  for (let i = 0; i < n; i++) {
    const m = new Message(JSON.stringify({ temp: 30 + i }));
    m.contentType = 'application/json';
    m.contentEncoding = 'utf-8';
    m.properties.add('alert', 'high');
    await client.sendEvent(m); // resolves on PUBACK
  }
  step('sent', { count: n });
  await client.close();
  step('closed');
  process.exit(0);
}
main().catch((err) => fail('main', err));
