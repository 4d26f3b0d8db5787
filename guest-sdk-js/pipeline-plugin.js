// Write a pipeline transform plugin in JavaScript (or TypeScript).
//
// The same shape as the Rust `guest-sdk` and the Python one: a `transform(record)`
// function returning an `Output`, an array of outputs, or nothing (dropped on purpose);
// a thrown `DomainError` sends the record to the dead-letter queue, an
// `InfrastructureError` is retried by the host, and any other exception is a bug: the
// instance traps, as a panic does in Rust, and the host isolates the record. The packed
// batches of `wit/plugin.wit` are decoded here, so a plugin sees plain records:
//
//     import { plugin, Output } from './sdk/pipeline-plugin.js';
//
//     export default plugin({
//       name: 'my-plugin',
//       version: '0.1.0',
//       transform(record) {
//         const event = record.json();
//         return Output.json({ id: event.id }).withKey(event.id);
//       },
//     });
//
// This file imports nothing of the contract, so a plugin's unit tests run on Node.js as
// they are (logs to the console, lookups against `stubTable`). `build.mjs` makes the
// component: it adds the entry that binds the host's functions (`component.js`) and runs
// componentize-js.

const NONE = 0xffffffff;
const RECORD_WORDS = 6;
const ATTRIBUTE_WORDS = 4;
const OUTPUT_WORDS = 8;

// `ignoreBOM`: a byte order mark stays in the text, where JSON refuses it (as serde_json
// does); `fatal`: bytes that are not UTF-8 are an error, not U+FFFD.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

/** The data is bad: retrying cannot help. The record goes to the dead-letter queue. */
export class DomainError extends Error {
  constructor(message) {
    super(message);
    this.name = 'DomainError';
  }
}

/** Something transient went wrong: the host retries the record, then dead-letters it. */
export class InfrastructureError extends Error {
  constructor(message) {
    super(message);
    this.name = 'InfrastructureError';
  }
}

/** The plugin was not granted the table (its manifest does not declare it, or the
 * operator did not map it): a bug to fix, not data to retry. */
export class LookupNotGranted extends DomainError {
  constructor(message) {
    super(message);
    this.name = 'LookupNotGranted';
  }
}

/** The table cannot be read now (throttled, timed out, out of time): the records that
 * needed it are retried or handed back, never dead-lettered as bad data. */
export class LookupUnavailable extends InfrastructureError {
  constructor(message) {
    super(message);
    this.name = 'LookupUnavailable';
  }
}

/** Whether `text` is well-formed UTF-16 (no lone surrogate), which UTF-8 can carry. */
function wellFormed(text) {
  if (typeof text.isWellFormed === 'function') return text.isWellFormed();
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return false;
      i++;
    } else if (unit >= 0xdc00 && unit <= 0xdfff) {
      return false;
    }
  }
  return true;
}

/** Text that may hold a number no double holds (an exponent, or 300 digits) or a lone
 * surrogate (only an escape can write one: the text came from UTF-8). */
const EXPONENT_OR_SURROGATE = /[0-9][eE]|\\u[dD][89a-fA-F]/;
const LONG_NUMBER = /[0-9]{300}/;

function maybeLoose(text) {
  return EXPONENT_OR_SURROGATE.test(text) || (text.length >= 300 && LONG_NUMBER.test(text));
}

/** serde_json's limit on nesting (arrays and objects inside each other). */
const MAX_DEPTH = 128;

/** Whether `text` nests arrays and objects deeper than `MAX_DEPTH` (brackets inside
 * strings aside). Only text long enough to could. */
function tooDeep(text) {
  if (text.length <= 2 * MAX_DEPTH) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // a backslash: skip what it escapes
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_DEPTH) return true;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return false;
}

/** JSON.parse, strict as serde_json is: numbers no double holds (`1e400`) and strings
 * with a lone surrogate (no UTF-8 form) are refused. The check runs only on text that
 * could hold either (a reviver costs as much as the parse). */
function strictJson(text) {
  if (tooDeep(text)) throw new SyntaxError(`nested more than ${MAX_DEPTH} deep`);
  if (!maybeLoose(text)) return JSON.parse(text);
  return JSON.parse(text, (key, value) => {
    if (typeof value === 'number' && !Number.isFinite(value)) {
      throw new SyntaxError('number out of range');
    }
    if (typeof value === 'string' && !wellFormed(value)) {
      throw new SyntaxError('a string with a lone surrogate');
    }
    if (!wellFormed(key)) {
      throw new SyntaxError('a key with a lone surrogate');
    }
    return value;
  });
}

/** One input record: payload bytes, an optional key, and attributes the host set
 * (`source`, `stream`, `shard`, `line`, ...) as `[name, value]` pairs. */
export class Record {
  constructor(payload, key = null, attributes = []) {
    this.payload = typeof payload === 'string' ? encoder.encode(payload) : payload;
    this.key = typeof key === 'string' ? encoder.encode(key) : key;
    this.attributes = attributes;
  }

  /** The payload as UTF-8 text; not UTF-8 is a `DomainError`. */
  text() {
    try {
      return utf8.decode(this.payload);
    } catch (e) {
      throw new DomainError(`payload is not UTF-8: ${e.message}`);
    }
  }

  /** The payload parsed as JSON; not JSON (or numbers and strings JSON's other readers
   * refuse) is a `DomainError`. */
  json() {
    const text = this.text();
    try {
      return strictJson(text);
    } catch (e) {
      throw new DomainError(`invalid JSON payload: ${e.message}`);
    }
  }

  /** The attribute `name`'s value, or `null`. */
  attribute(name) {
    for (const [key, value] of this.attributes) {
      if (key === name) return value;
    }
    return null;
  }
}

/** `value` as compact JSON, as serde_json writes it: a `BigInt` as its exact digits
 * (JavaScript's numbers lose integers past 2^53); an integral number without a fraction.
 * A string with a lone surrogate has no UTF-8 form: a `DomainError`. */
export function toJson(value) {
  // JSON.stringify writes what serde_json would, but for a BigInt (it throws) and a lone
  // surrogate (it writes an escape): those take the long way.
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    text = undefined;
  }
  if (text !== undefined && !ESCAPED_SURROGATE.test(text)) return text;
  return writeJson(value);
}

const ESCAPED_SURROGATE = /\\u[dD][89a-fA-F]/;

function writeJson(value, key = '') {
  if (value instanceof Number || value instanceof String || value instanceof Boolean) {
    value = value.valueOf();
  }
  switch (typeof value) {
    case 'bigint':
      return value.toString();
    case 'string':
      if (!wellFormed(value)) {
        throw new DomainError('the output is not valid text (a lone surrogate)');
      }
      return JSON.stringify(value);
    case 'object': {
      if (value === null) return 'null';
      if (typeof value.toJSON === 'function') return writeJson(value.toJSON(key), key);
      if (Array.isArray(value)) {
        // Holes and what JSON cannot hold are `null`, as JSON.stringify writes them.
        const items = [];
        for (let i = 0; i < value.length; i++) {
          const v = value[i];
          const absent = v === undefined || typeof v === 'function' || typeof v === 'symbol';
          items.push(absent ? 'null' : writeJson(v, String(i)));
        }
        return `[${items.join(',')}]`;
      }
      const fields = [];
      for (const [k, v] of Object.entries(value)) {
        if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
        fields.push(`${writeJson(String(k))}:${writeJson(v, k)}`);
      }
      return `{${fields.join(',')}}`;
    }
    default:
      return JSON.stringify(value) ?? 'null';
  }
}

/** `value`, which must be text UTF-8 can carry. */
function text(value, what) {
  if (typeof value !== 'string') {
    throw new TypeError(`the ${what} must be a string, not ${typeof value}`);
  }
  if (!wellFormed(value)) {
    throw new DomainError(`the ${what} is not valid text (a lone surrogate)`);
  }
  return value;
}

/** `value` (text or bytes) as bytes; anything else is a bug in the plugin. */
function bytes(value, what) {
  if (typeof value === 'string') {
    if (!wellFormed(value)) {
      throw new DomainError(`the ${what} is not valid text (a lone surrogate)`);
    }
    return encoder.encode(value);
  }
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  throw new TypeError(`the ${what} must be a string or a Uint8Array, not ${typeof value}`);
}

/** One output record: payload bytes, and optionally a key, a destination (a sink name;
 * none: the default sink) and attributes. */
export class Output {
  constructor(payload) {
    this.payload = bytes(payload, 'payload');
    this.key = null;
    this.destination = null;
    this.attributes = [];
  }

  /** An output whose payload is `value` as compact JSON (see `toJson`). */
  static json(value) {
    return new Output(toJson(value));
  }

  withKey(key) {
    this.key = bytes(key, 'key');
    return this;
  }

  to(destination) {
    this.destination = text(destination, 'destination');
    return this;
  }

  withAttribute(name, value) {
    this.attributes.push([text(String(name), 'attribute name'), text(String(value), 'attribute value')]);
    return this;
  }
}

/** The plugin's settings (`--config key=value`, the manifest's defaults). */
export class Config {
  constructor(pairs = []) {
    this.values = new Map(pairs);
  }

  /** The setting `name`, or `fallback`. */
  get(name, fallback = null) {
    return this.values.has(name) ? this.values.get(name) : fallback;
  }

  /** The setting parsed as a number, or `fallback`; a bad value is a `DomainError`
   * naming the setting. */
  number(name, fallback) {
    const raw = this.values.get(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!DECIMAL.test(raw) || !Number.isFinite(value)) {
      throw new DomainError(`config ${name}=${JSON.stringify(raw)} is not a number`);
    }
    return value;
  }
}

/** A number as a setting writes it: decimal, no spaces, no `0x`. */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

let settings = new Config();

/** The plugin's settings, as `init` received them. */
export function config() {
  return settings;
}

// The host's functions, bound by the component's entry; on Node.js (unit tests), the
// console and stubbed tables.
let host = {
  log(level, message) {
    console.error(`[${level}] ${message}`);
  },
  counter() {},
  gauge() {},
};
let hostLookup = null;

/** Binds the host's imports (the component's entry calls it; see `component.js`). */
export function bindHost(hostImports, lookupImports) {
  host = hostImports;
  hostLookup = lookupImports;
}

/** Structured log lines, tagged by the host with the plugin's name and version. */
export const log = {
  trace: (message) => host.log('trace', String(message)),
  debug: (message) => host.log('debug', String(message)),
  info: (message) => host.log('info', String(message)),
  warn: (message) => host.log('warn', String(message)),
  error: (message) => host.log('error', String(message)),
};

/** Adds `delta` to the counter `name` (a metric `plugin.NAME` in Lambda). */
export function counter(name, delta = 1) {
  host.counter(String(name), BigInt(delta));
}

/** Sets the gauge `name` to `value`. */
export function gauge(name, value) {
  host.gauge(String(name), Number(value));
}

/** What one `lookup` found, by key: `get(key)` is the row's bytes (JSON) or `null`;
 * `json(key)` parses it. */
export class Found {
  constructor(values) {
    this.values = values;
  }

  get(key) {
    return this.values.get(key) ?? null;
  }

  json(key) {
    const value = this.get(key);
    if (value === null) return null;
    try {
      return strictJson(utf8.decode(value));
    } catch (e) {
      throw new DomainError(`the looked-up value of ${JSON.stringify(key)} is not JSON: ${e.message}`);
    }
  }

  has(key) {
    return this.get(key) !== null;
  }

  get size() {
    return this.values.size;
  }
}

// Tables stubbed for unit tests (`stubTable`).
const stubs = new Map();

/** Looks `keys` up in the lookup table `table` with one call to the host (each distinct
 * key once). Throws `LookupUnavailable` or `LookupNotGranted`. */
export function lookup(table, keys) {
  const distinct = [...new Set([...keys].map(String))];
  if (distinct.length === 0) return new Found(new Map());
  let values;
  if (hostLookup === null) {
    values = stubGet(table, distinct);
  } else {
    try {
      values = hostLookup.get(table, distinct);
    } catch (e) {
      const error = e?.payload ?? e;
      if (error?.tag === 'not-granted') {
        throw new LookupNotGranted(`lookup not granted: ${error.val}`);
      }
      if (error?.tag === 'unavailable') {
        throw new LookupUnavailable(`lookup unavailable: ${error.val}`);
      }
      throw e;
    }
  }
  return new Found(new Map(distinct.map((k, i) => [k, values[i] ?? null])));
}

/** For unit tests: fills `table` with `rows` (an object of key to a JSON value). Lookups
 * of a table never stubbed throw `LookupNotGranted`. */
export function stubTable(table, rows) {
  stubs.set(
    table,
    new Map(Object.entries(rows).map(([k, v]) => [String(k), encoder.encode(toJson(v))])),
  );
}

/** For unit tests: makes `table` fail as unavailable (a throttled table). */
export function stubUnavailable(table, why) {
  stubs.set(table, String(why));
}

function stubGet(table, keys) {
  const rows = stubs.get(table);
  if (rows === undefined) {
    throw new LookupNotGranted(`lookup not granted: table \`${table}\` is not stubbed`);
  }
  if (typeof rows === 'string') throw new LookupUnavailable(`lookup unavailable: ${rows}`);
  return keys.map((k) => rows.get(k) ?? null);
}

/** The batch's records, decoded from its tables. */
function records(batch) {
  const data = batch.bytes;
  const words = batch.records;
  const attributeWords = batch.attributes;
  const span = (offset, length) => data.subarray(offset, offset + length);
  const out = [];
  for (let base = 0; base + RECORD_WORDS <= words.length; base += RECORD_WORDS) {
    const [keyOffset, keyLength, offset, length, first, count] = words.subarray(base, base + RECORD_WORDS);
    const attributes = [];
    for (let a = first; a < first + count; a++) {
      const at = a * ATTRIBUTE_WORDS;
      attributes.push([
        utf8.decode(span(attributeWords[at], attributeWords[at + 1])),
        utf8.decode(span(attributeWords[at + 2], attributeWords[at + 3])),
      ]);
    }
    const key = keyOffset === NONE ? null : span(keyOffset, keyLength);
    out.push(new Record(span(offset, length), key, attributes));
  }
  return out;
}

/** An output batch being written: bytes back to back, tables of spans. */
class Packer {
  constructor() {
    this.chunks = [];
    this.length = 0;
    this.outputs = [];
    this.attributes = [];
    this.results = [];
    this.failures = [];
  }

  span(value) {
    if (value === null || value === undefined) return [NONE, 0];
    const data = typeof value === 'string' ? encoder.encode(value) : value;
    const offset = this.length;
    this.chunks.push(data);
    this.length += data.length;
    return [offset, data.length];
  }

  result(answer) {
    const list = answer === null || answer === undefined ? [] : Array.isArray(answer) ? answer : [answer];
    const first = this.outputs.length / OUTPUT_WORDS;
    for (const output of list) {
      if (!(output instanceof Output)) {
        throw new TypeError(`transform returned ${typeof output}, not an Output`);
      }
      const firstAttribute = this.attributes.length / ATTRIBUTE_WORDS;
      for (const [name, value] of output.attributes) {
        this.attributes.push(...this.span(name), ...this.span(value));
      }
      this.outputs.push(
        ...this.span(output.payload),
        ...this.span(output.key),
        ...this.span(output.destination),
        firstAttribute,
        output.attributes.length,
      );
    }
    this.results.push(first, list.length);
  }

  fail(index, error) {
    this.results.push(this.outputs.length / OUTPUT_WORDS, 0);
    this.failures.push({ index, error });
  }

  batch() {
    const data = new Uint8Array(this.length);
    let at = 0;
    for (const chunk of this.chunks) {
      data.set(chunk, at);
      at += chunk.length;
    }
    return {
      bytes: data,
      outputs: Uint32Array.from(this.outputs),
      attributes: Uint32Array.from(this.attributes),
      results: Uint32Array.from(this.results),
      failures: this.failures,
    };
  }
}

/** A thrown error as the contract's `error`, or `null` for a bug (it traps). */
function contractError(e) {
  if (e instanceof DomainError) return { tag: 'domain', val: e.message };
  if (e instanceof InfrastructureError) return { tag: 'infrastructure', val: e.message };
  return null;
}

/**
 * A plugin: `name`, `version`, `transform(record)` and optionally `init(config)` (which
 * may throw `DomainError` to refuse the settings) and `prepare(records)`, run once per
 * batch first (to `lookup` the keys the batch needs, once); `transform(record, prepared)`
 * then gets what it returned, and an error it throws fails every record of the batch.
 * Export it as the module's default.
 */
export function plugin({ name, version, transform, init, prepare }) {
  if (typeof transform !== 'function') throw new TypeError('plugin: `transform` is not a function');
  return {
    info() {
      return { name, version };
    },

    init(pairs) {
      settings = new Config(pairs);
      if (init === undefined) return;
      try {
        init(settings);
      } catch (e) {
        const error = contractError(e);
        if (error === null) throw e;
        // componentize-js returns a thrown `{ payload }` as the result's error.
        const refused = new Error(error.val);
        refused.payload = error;
        throw refused;
      }
    },

    transform(batch) {
      const packer = new Packer();
      const all = records(batch);
      let prepared;
      let failure = null;
      if (prepare !== undefined) {
        try {
          prepared = prepare(all);
        } catch (e) {
          failure = contractError(e);
          if (failure === null) throw e;
        }
      }
      all.forEach((record, index) => {
        if (failure !== null) {
          packer.fail(index, failure);
          return;
        }
        let answer;
        try {
          answer = prepare === undefined ? transform(record) : transform(record, prepared);
        } catch (e) {
          const error = contractError(e);
          // Any other exception is a bug: it traps, like a panic in Rust, and the host
          // isolates the record on a fresh instance.
          if (error === null) throw e;
          packer.fail(index, error);
          return;
        }
        packer.result(answer);
      });
      return packer.batch();
    },
  };
}

/** `inputs` packed as the host packs a batch. */
function pack(inputs) {
  const packer = new Packer();
  const words = [];
  for (const record of inputs) {
    const [keyOffset, keyLength] = packer.span(record.key);
    const [offset, length] = packer.span(record.payload);
    const first = packer.attributes.length / ATTRIBUTE_WORDS;
    for (const [name, value] of record.attributes) {
      packer.attributes.push(...packer.span(name), ...packer.span(value));
    }
    words.push(keyOffset, keyLength, offset, length, first, record.attributes.length);
  }
  const packed = packer.batch();
  return { bytes: packed.bytes, records: Uint32Array.from(words), attributes: packed.attributes };
}

/** For unit tests: runs `thePlugin` over `inputs` (records, or payloads as strings) as the
 * host would, after `init(pairs)`, and answers per record: `{ outputs }` (`Output`s;
 * none when dropped) or `{ error: { tag, val } }`. A bug in the plugin throws. */
export function runBatch(thePlugin, inputs, pairs = []) {
  thePlugin.init(pairs);
  const list = inputs.map((r) => (r instanceof Record ? r : new Record(r)));
  const answer = thePlugin.transform(pack(list));
  const span = (offset, length) => (offset === NONE ? null : answer.bytes.subarray(offset, offset + length));
  const text = (offset, length) => utf8.decode(span(offset, length));
  return list.map((_, index) => {
    const failed = answer.failures.find((f) => f.index === index);
    if (failed) return { error: failed.error };
    const [first, count] = answer.results.subarray(index * 2, index * 2 + 2);
    const outputs = [];
    for (let o = first; o < first + count; o++) {
      const w = answer.outputs.subarray(o * OUTPUT_WORDS, (o + 1) * OUTPUT_WORDS);
      const output = new Output(span(w[0], w[1]));
      output.key = span(w[2], w[3]);
      output.destination = w[4] === NONE ? null : text(w[4], w[5]);
      for (let a = w[6]; a < w[6] + w[7]; a++) {
        const at = answer.attributes.subarray(a * ATTRIBUTE_WORDS, (a + 1) * ATTRIBUTE_WORDS);
        output.attributes.push([text(at[0], at[1]), text(at[2], at[3])]);
      }
      outputs.push(output);
    }
    return { outputs };
  });
}
