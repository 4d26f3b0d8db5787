// The SDK's own tests, on Node.js: `node --test test/*.test.js` (./dev test runs them).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  Config,
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

test('the careful writer agrees with JSON.stringify where both write', () => {
  // A BigInt anywhere takes the careful way for the whole value.
  const value = { n: 1n, holes: [1, , 3], boxed: [new Number(5), new String('x'), new Boolean(true)], at: new Date(0) };
  assert.equal(
    toJson(value),
    '{"n":1,"holes":[1,null,3],"boxed":[5,"x",true],"at":"1970-01-01T00:00:00.000Z"}',
  );
  const { n, ...rest } = value;
  assert.equal(toJson(rest), JSON.stringify(rest));
});

test('json() refuses nesting past 128 as serde_json does', () => {
  assert.deepEqual(new Record(`${'['.repeat(128)}${']'.repeat(128)}`).json().length, 1);
  assert.throws(() => new Record(`${'['.repeat(129)}${']'.repeat(129)}`).json(), /128 deep/);
  assert.doesNotThrow(() => new Record(JSON.stringify({ s: '['.repeat(300) })).json(), 'brackets in a string');
});

test('a destination and attributes must be text UTF-8 can carry', () => {
  assert.throws(() => new Output('x').to('d\ud800'), DomainError);
  assert.throws(() => new Output('x').to(42), TypeError);
  assert.throws(() => new Output('x').withAttribute('a', '\udc00'), DomainError);
  const config = new Config([['rate', '0x10'], ['ok', '1.5e2']]);
  assert.throws(() => config.number('rate', 1), DomainError);
  assert.equal(config.number('ok', 1), 150);
});
