// scripts/bench.sh: ns per validation of `twilio` (npm) validateRequest over the shared file of
// signed status callbacks (herald-bench signature-corpus). Usage:
//   node signature.js CORPUS.json ROUNDS OUT.json
'use strict';

const fs = require('node:fs');
const twilio = require('twilio');

const [corpusPath, roundsArg, outPath] = process.argv.slice(2);
const corpus = JSON.parse(fs.readFileSync(corpusPath, 'utf8'));
const rounds = Number(roundsArg);
const requests = corpus.requests.map((r) => ({
  url: r.url,
  params: Object.fromEntries(r.params),
  signature: r.signature,
}));
const validate = (r) => twilio.validateRequest(corpus.auth_token, r.signature, r.url, r.params);

const allValid = requests.every(validate);
let ok = 0;
for (const r of requests) ok += validate(r) ? 1 : 0; // warm up
const t0 = process.hrtime.bigint();
for (let i = 0; i < rounds; i++) {
  for (const r of requests) ok += validate(r) ? 1 : 0;
}
const ns = Number(process.hrtime.bigint() - t0);
const validations = rounds * requests.length;
const result = {
  implementation: 'twilio (npm) validateRequest',
  version: require('twilio/package.json').version + ` on Node.js ${process.versions.node}`,
  requests: requests.length,
  validations,
  ns_per_validation: ns / validations,
  all_valid: allValid && ok === validations + requests.length,
};
fs.writeFileSync(outPath, JSON.stringify(result, null, 2) + '\n');
console.error(`  twilio (npm): ${result.ns_per_validation.toFixed(0)} ns/validation`);
if (!result.all_valid) {
  console.error('twilio (npm) rejected a request of the corpus');
  process.exit(1);
}
