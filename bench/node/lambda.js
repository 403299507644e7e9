// The Node.js baseline of scripts/bench.sh: what a team would otherwise deploy, a Lambda on the
// `twilio` SDK and AWS SDK v3 clients, built at module scope as a typical handler builds them,
// speaking the Lambda Runtime API itself (as a custom runtime does) so that herald-bench's
// emulator measures it exactly as it measures Herald's binaries.
//
// Its handler only parses the event and, for a Twilio callback, validates the signature: no AWS
// or Twilio call is made, so its answers and warm times are a lower bound for a real handler.
'use strict';

const http = require('node:http');
const twilio = require('twilio');
const { DynamoDBClient } = require('@aws-sdk/client-dynamodb');
const { SQSClient } = require('@aws-sdk/client-sqs');
const { SecretsManagerClient } = require('@aws-sdk/client-secrets-manager');
const { KMSClient } = require('@aws-sdk/client-kms');

// Module scope: built once per cold start.
const region = process.env.AWS_REGION;
const dynamodb = new DynamoDBClient({ region });
const sqs = new SQSClient({ region });
const secrets = new SecretsManagerClient({ region });
const kms = new KMSClient({ region });
const client = twilio(process.env.TWILIO_API_KEY_SID, process.env.TWILIO_API_KEY_SECRET, {
  accountSid: process.env.TWILIO_ACCOUNT_SID,
});
const authToken = process.env.TWILIO_AUTH_TOKEN;
const webhookBase = process.env.TWILIO_WEBHOOK_BASE_URL;
void [dynamodb, sqs, secrets, kms, client];

async function handler(event) {
  const headers = event.headers || {};
  const signature = headers['x-twilio-signature'];
  if (signature !== undefined) {
    const route = event.rawPath;
    const query = event.rawQueryString ? `?${event.rawQueryString}` : '';
    const params = Object.fromEntries(new URLSearchParams(event.body || ''));
    const ok = twilio.validateRequest(authToken, signature, `${webhookBase}${route}${query}`, params);
    return { statusCode: ok ? 200 : 403, body: '' };
  }
  const body = JSON.parse(event.body || '{}');
  return { statusCode: 202, body: JSON.stringify({ accepted: typeof body.to === 'string' }) };
}

const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(':');
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(method, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

async function loop() {
  for (;;) {
    const next = await request('GET', '/2018-06-01/runtime/invocation/next');
    const id = next.headers['lambda-runtime-aws-request-id'];
    try {
      const result = await handler(JSON.parse(next.body));
      await request('POST', `/2018-06-01/runtime/invocation/${id}/response`, JSON.stringify(result));
    } catch (e) {
      const error = JSON.stringify({ errorType: e.name, errorMessage: e.message });
      await request('POST', `/2018-06-01/runtime/invocation/${id}/error`, error);
    }
  }
}

loop().catch((e) => {
  console.error(e);
  process.exit(1);
});
