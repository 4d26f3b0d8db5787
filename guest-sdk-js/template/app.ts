// {name}: a pipeline transform plugin.
//
// Keeps orders of at least `min_amount` (config, default 0) as `{id, amount_cents, source}`
// keyed by id; drops smaller ones; a negative amount is bad data (the record goes to the
// dead-letter queue with the message).

import { DomainError, Output, config, plugin, type Record as InputRecord } from './sdk/pipeline-plugin.js';

export function transform(record: InputRecord): Output | null {
  const order = record.json();
  if (order === null || typeof order !== 'object' || Array.isArray(order) || typeof order.id !== 'string') {
    throw new DomainError('an order needs an `id`');
  }
  const id: string = order.id;
  const amount = order.amount;
  if (typeof amount !== 'number') throw new DomainError(`${id}: \`amount\` is not a number`);
  if (amount < 0) throw new DomainError(`${id}: negative amount`);
  if (amount < config().number('min_amount', 0)) return null;
  const kept = {
    id,
    amount_cents: Math.floor(amount * 100 + 0.5),
    source: record.attribute('source') ?? 'unknown',
  };
  return Output.json(kept).withKey(id);
}

export default plugin({ name: '{name}', version: '0.1.0', transform });
