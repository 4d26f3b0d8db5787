// The SDK's own tests, on Node.js: `node --test` (./dev test runs them).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  DomainError,
  InfrastructureError,
  Output,
  Record,
  config,
  lookup,
  plugin,
  runBatch,
  stubTable,
  stubUnavailable,
  toJson,
} from '../pipeline-plugin.js';

const text = (bytes) => new TextDecoder().decode(bytes);

test('json() is strict as serde_json is', () => {
  assert.deepEqual(new Record('{"a":[1,2.5,"é"]}').json(), { a: [1, 2.5, 'é'] });
  for (const bad of ['{"a":1e400}', '{"a":"\\ud800"}', '\ufeff{}', 'NaN', '{"a":1,}']) {
    assert.throws(() => new Record(bad).json(), DomainError, bad);
  }
  assert.throws(() => new Record(Uint8Array.of(0xff)).text(), /not UTF-8/);
});

test('toJson writes BigInts exactly and refuses lone surrogates', () => {
  assert.equal(toJson({ n: 2n ** 63n - 1n, s: 'a"\n\u0001', k: [1, null, true] }),
    '{"n":9223372036854775807,"s":"a\\"\\n\\u0001","k":[1,null,true]}');
  assert.equal(toJson({ skipped: undefined, x: 1 }), '{"x":1}');
  assert.throws(() => Output.json({ s: '\ud800' }), DomainError);
});

test('outputs carry keys, destinations and attributes through the packed batch', () => {
  const p = plugin({
    name: 't',
    version: '1',
    transform(record) {
      if (record.text() === 'drop') return null;
      if (record.text() === 'bad') throw new DomainError('bad one');
      if (record.text() === 'later') throw new InfrastructureError('try later');
      return [
        new Output(record.payload).withKey('k').to('audit').withAttribute('a', config().get('x', 'none')),
        Output.json({ seen: record.attribute('source') }),
      ];
    },
  });
  const answers = runBatch(p, ['one', 'drop', 'bad', new Record('two', 'key', [['source', 'sqs']]), 'later'], [['x', 'y']]);
  assert.equal(answers[0].outputs.length, 2);
  const [first, second] = answers[0].outputs;
  assert.deepEqual([text(first.payload), text(first.key), first.destination, first.attributes], ['one', 'k', 'audit', [['a', 'y']]]);
  assert.equal(text(second.payload), '{"seen":null}');
  assert.deepEqual(answers[1], { outputs: [] });
  assert.deepEqual(answers[2], { error: { tag: 'domain', val: 'bad one' } });
  assert.equal(text(answers[3].outputs[1].payload), '{"seen":"sqs"}');
  assert.deepEqual(answers[4], { error: { tag: 'infrastructure', val: 'try later' } });
});

test('a bug throws out of the batch (the component traps; the host isolates the record)', () => {
  const p = plugin({ name: 't', version: '1', transform: () => null.boom });
  assert.throws(() => runBatch(p, ['x']), TypeError);
});

test('init can refuse the settings with a domain error the contract carries', () => {
  const p = plugin({
    name: 't',
    version: '1',
    transform: () => null,
    init(settings) {
      settings.number('rate', 1);
    },
  });
  assert.throws(() => p.init([['rate', 'fast']]), (e) => e.payload?.tag === 'domain' && /rate/.test(e.payload.val));
});

test('lookups: each distinct key once, prepare once per batch, unavailable fails the batch', () => {
  stubTable('users', { ann: { tier: 'gold' } });
  const asked = [];
  const p = plugin({
    name: 't',
    version: '1',
    prepare(records) {
      const keys = records.map((r) => r.text());
      asked.push(keys);
      return lookup('users', keys);
    },
    transform(record, found) {
      return Output.json({ user: record.text(), user_row: found.json(record.text()) });
    },
  });
  const answers = runBatch(p, ['ann', 'bob', 'ann']);
  assert.equal(asked.length, 1);
  assert.equal(text(answers[0].outputs[0].payload), '{"user":"ann","user_row":{"tier":"gold"}}');
  assert.equal(text(answers[1].outputs[0].payload), '{"user":"bob","user_row":null}');
  stubUnavailable('users', 'throttled');
  const failed = runBatch(p, ['ann', 'bob']);
  assert.deepEqual(failed.map((a) => a.error?.tag), ['infrastructure', 'infrastructure']);
  assert.throws(() => lookup('nope', ['x']), /not granted/);
});
