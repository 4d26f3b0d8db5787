// Example plugin in JavaScript: the `enrich` plugin of `plugins/enrich`, output for output.
//
// Reads an event, keeps the fields downstream needs, and adds where the record came
// from. Config: `currency` (default `EUR`).
//
// Where JavaScript differs from Rust, it is made to agree: amounts round half away from
// zero (`Math.round` rounds halves up), and cents past 2^53 are a BigInt saturated to an
// i64 (a double there prints as rounded digits), written as their exact digits.

import { DomainError, Output, config, plugin } from './sdk/pipeline-plugin.js';

const I64_MAX = 2n ** 63n - 1n;
const I64_MIN = -(2n ** 63n);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const ASCII_DATE = /^[\x00-\x7f]{10}/;

/** `event[name]`, which must be of `kind` (a missing or mistyped field is bad data). */
function field(event, name, kind) {
  const value = event !== null && typeof event === 'object' && !Array.isArray(event) ? event[name] : undefined;
  if (typeof value !== kind) {
    throw new DomainError(`invalid JSON payload: \`${name}\` is missing or not a ${kind}`);
  }
  return value;
}

/** `amount * 100` rounded half away from zero, saturated to an i64 (as Rust's
 * `f64::round` and `as i64` do): a number while it is exact (below 2^53), a BigInt
 * past it (a number there would print rounded digits). */
export function cents(amount) {
  const scaled = amount * 100;
  if (!Number.isFinite(scaled)) return scaled > 0 ? I64_MAX : I64_MIN;
  const magnitude = Math.abs(scaled);
  let whole = Math.floor(magnitude);
  // `magnitude - whole` is exact, so halves round away from zero exactly.
  if (magnitude - whole >= 0.5) whole += 1;
  const rounded = scaled < 0 ? -whole : whole;
  if (Number.isSafeInteger(rounded)) return rounded;
  const big = BigInt(rounded);
  return big > I64_MAX ? I64_MAX : big < I64_MIN ? I64_MIN : big;
}

/** The first 10 bytes of `ts` (a date), when they end on a character boundary. */
export function day(ts) {
  // Ten ASCII characters are ten bytes, ending on a boundary whatever follows.
  if (ASCII_DATE.test(ts)) return ts.slice(0, 10);
  const raw = encoder.encode(ts);
  if (raw.length < 10 || (raw.length > 10 && (raw[10] & 0xc0) === 0x80)) {
    throw new DomainError('`ts` is not an RFC 3339 time');
  }
  return decoder.decode(raw.subarray(0, 10));
}

export function transform(record) {
  const event = record.json();
  const user = field(event, 'user', 'string');
  const enriched = {
    id: field(event, 'id', 'string'),
    user,
    action: field(event, 'action', 'string'),
    amount_cents: cents(field(event, 'amount', 'number')),
    currency: config().get('currency', 'EUR'),
    day: day(field(event, 'ts', 'string')),
    source: record.attribute('source') ?? 'unknown',
  };
  return Output.json(enriched).withKey(user);
}

export default plugin({ name: 'enrich', version: '0.1.0', transform });
