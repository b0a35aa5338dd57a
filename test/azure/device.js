// Drives the unmodified Azure IoT device SDK (azure-iot-device +
// azure-iot-device-mqtt) against a Mote server. Run by
// internal/broker/azure_sdk_test.go with MOTE_CONNECTION_STRING (a device
// connection string whose GatewayHostName is Mote's MQTTS address) and
// MOTE_CA_FILE (Mote's CA certificate). It prints one JSON line per step
// and exits 0 when every step succeeded.
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

  const m = new Message(JSON.stringify({ temp: 21.5 }));
  m.contentType = 'application/json';
  m.contentEncoding = 'utf-8';
  m.messageId = 'msg-1';
  m.properties.add('alert', 'high & dry');
  await client.sendEvent(m);
  step('sent');

  const twin = await client.getTwin();
  step('twin', { desired: twin.properties.desired });
  await new Promise((resolve, reject) =>
    twin.properties.reported.update({ fw: '1.0', temp: 21 }, (err) => (err ? reject(err) : resolve())));
  step('reported');

  // Cloud-to-device messages and a direct method. The test queues a Mote
  // command (delivered once the SDK subscribed), sets desired.fw and calls
  // the method "reboot" once it has seen "listening".
  const got = { desired: null, message: null, method: null };
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  const check = () => { if (got.desired && got.message && got.method) done(); };
  client.on('message', (msg) => {
    const props = {};
    msg.properties.propertyList.forEach((p) => { props[p.key] = p.value; });
    step('message', { messageId: msg.messageId, contentType: msg.contentType, body: msg.getData().toString(), props });
    client.complete(msg, (err) => {
      if (err) fail('complete', err);
      got.message = true;
      check();
    });
  });
  client.onDeviceMethod('reboot', (req, res) => {
    step('method', { payload: req.payload });
    res.send(200, { rebooting: true, delay: req.payload && req.payload.delay }, (err) => {
      if (err) fail('method response', err);
      got.method = true;
      check();
    });
  });
  twin.on('properties.desired', (patch) => {
    if (patch.fw === '2.0') {
      step('desired', { patch });
      got.desired = true;
      check();
    }
  });
  step('listening');
  await finished;
  await client.close();
  step('closed');
  process.exit(0);
}
main().catch((err) => fail('main', err));
