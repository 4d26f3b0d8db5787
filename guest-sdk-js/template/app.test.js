// Unit tests of app.js, on Node.js: `npm test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import app from '../app.js';
import { runBatch } from '../sdk/pipeline-plugin.js';

const text = (bytes) => new TextDecoder().decode(bytes);

test('keeps an order in cents, keyed by its id', () => {
  const [answer] = runBatch(app, ['{"id":"o1","amount":12.5}']);
  assert.equal(text(answer.outputs[0].payload), '{"id":"o1","amount_cents":1250,"source":"unknown"}');
  assert.equal(text(answer.outputs[0].key), 'o1');
});

test('a negative amount is bad data', () => {
  const [answer] = runBatch(app, ['{"id":"o2","amount":-1}']);
  assert.deepEqual(answer.error, { tag: 'domain', val: 'o2: negative amount' });
});
