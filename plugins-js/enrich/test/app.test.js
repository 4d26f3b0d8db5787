// The JavaScript enrich's unit tests, on Node.js: `node --test test/*.test.js` (the SDK decodes and
// packs batches as the host does; nothing of the contract is needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import enrich, { cents } from '../app.js';
import { Record, runBatch } from '../sdk/pipeline-plugin.js';

const decoder = new TextDecoder();

test('enriches and projects, keyed by user', () => {
  const record = new Record(
    '{"id":"e1","user":"ann","action":"buy","amount":12.345,"ts":"2026-11-24T13:00:00Z","extra":1}',
    null,
    [['source', 'kinesis']],
  );
  const [answer] = runBatch(enrich, [record], [['currency', 'USD']]);
  const [output] = answer.outputs;
  assert.equal(
    decoder.decode(output.payload),
    '{"id":"e1","user":"ann","action":"buy","amount_cents":1235,"currency":"USD","day":"2026-11-24","source":"kinesis"}',
  );
  assert.equal(decoder.decode(output.key), 'ann');
});

test('halves round away from zero, and cents saturate as Rust casts them', () => {
  assert.equal(cents(0.125), 13);
  assert.equal(cents(-0.125), -13);
  assert.equal(cents(2.675), 268, 'the product is 267.5 in doubles, as in Rust');
  assert.equal(cents(1e300), 2n ** 63n - 1n);
  assert.equal(cents(45035996273704.97), 4503599627370497);
  assert.equal(cents(1e16), 10n ** 18n, 'past 2^53: exact digits as a BigInt');
});

test('bad data is a domain error; the rest of the batch goes on', () => {
  const answers = runBatch(enrich, ['{not json', '[1,2,3]', '{"id":"x","user":"u","action":"a","amount":1,"ts":"2026"}',
    '{"id":"ok","user":"u","action":"a","amount":1,"ts":"2026-11-24"}']);
  assert.deepEqual(answers.slice(0, 3).map((a) => a.error?.tag), ['domain', 'domain', 'domain']);
  assert.equal(answers[3].outputs.length, 1);
});
