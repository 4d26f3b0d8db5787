// The JavaScript `enrich` as a plain Node.js function, outside the sandbox: the same
// records as the languages bench makes, through `transform` and the SDK's `Output.json`,
// best of 3. Prints records/s. Usage: node node_enrich.mjs RECORDS
import { transform } from '../../plugins-js/enrich/app.js';
import { Record } from '../../plugins-js/enrich/sdk/pipeline-plugin.js';

const n = Number(process.argv[2] ?? 20000);
const pad = (v, width) => String(v).padStart(width, '0');
const records = Array.from({ length: n }, (_, i) => new Record(
  `{"id":"evt-${pad(i, 8)}","user":"user-${pad(i % 5000, 5)}","action":"buy","amount":${i % 1000}.${pad(i % 100, 2)},"ts":"2026-11-24T13:00:00Z","country":"DE"}`,
  null,
  [['source', 'kinesis']],
));
let best = Infinity;
for (let repeat = 0; repeat < 3; repeat++) {
  const started = process.hrtime.bigint();
  let bytes = 0;
  for (const record of records) bytes += transform(record).payload.length;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (bytes === 0) throw new Error('no outputs');
  best = Math.min(best, seconds);
}
console.log(JSON.stringify({ records_per_second: n / best, node: process.version }));
