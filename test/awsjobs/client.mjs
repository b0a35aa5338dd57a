// Drives the unmodified AWS IoT Device SDK for JavaScript v1 (npm
// "aws-iot-device-sdk") jobs client against Mote, as a device written for
// AWS IoT Jobs would run: only the endpoint and the credentials differ.
// It takes every job it is notified of, reports it IN_PROGRESS and then
// SUCCEEDED, and prints one JSON line with what it saw.
import awsIot from 'aws-iot-device-sdk';

const thing = process.env.THING;
const want = Number(process.env.JOBS || '1');
const result = { ok: false, jobs: [], errors: [] };
const done = (ok) => {
  result.ok = ok;
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(ok ? 0 : 1);
};
setTimeout(() => { result.errors.push('timeout'); done(false); }, Number(process.env.TIMEOUT_MS || '30000'));

const jobs = awsIot.jobs({
  host: process.env.HOST,
  port: Number(process.env.PORT),
  protocol: 'mqtts',
  clientId: thing,
  privateKey: Buffer.from(process.env.KEY_PEM),
  clientCert: Buffer.from(process.env.CERT_PEM),
  caCert: Buffer.from(process.env.CA_PEM),
  keepalive: 30,
});
jobs.on('error', (e) => result.errors.push(String(e)));

const seen = new Set();
jobs.subscribeToJobs(thing, (err, job) => {
  if (err) { result.errors.push(String(err)); return; }
  if (seen.has(job.id)) { result.errors.push('job offered twice: ' + job.id); return; }
  seen.add(job.id);
  result.jobs.push({ id: job.id, operation: job.operation ?? null, document: job.document });
  job.inProgress({ step: 'installing' }, (e1) => {
    if (e1) { result.errors.push(String(e1)); return; }
    job.succeeded({ step: 'done' }, (e2) => {
      if (e2) { result.errors.push(String(e2)); return; }
      if (result.jobs.length >= want) {
        // Give the last update a moment to be answered, then stop.
        setTimeout(() => done(result.errors.length === 0), 300);
      }
    });
  });
});
// operation-specific subscription: jobs whose document says "install".
jobs.subscribeToJobs(thing, 'install', (err, job) => {
  if (err) { result.errors.push(String(err)); return; }
  seen.add(job.id);
  result.jobs.push({ id: job.id, operation: job.operation, document: job.document, viaOperation: true });
  job.succeeded({ via: 'install' }, (e) => {
    if (e) { result.errors.push(String(e)); }
    if (result.jobs.length >= want) setTimeout(() => done(result.errors.length === 0), 300);
  });
});
jobs.on('connect', () => {
  jobs.startJobNotifications(thing, (e) => { if (e) result.errors.push(String(e)); });
});
