// Types of the JavaScript SDK (`pipeline-plugin.js`), so a `.ts` plugin type-checks
// against it: `import { plugin, Output, type Record } from './sdk/pipeline-plugin.js'`.

/** The data is bad: retrying cannot help. The record goes to the dead-letter queue. */
export class DomainError extends Error {
  constructor(message: string);
}

/** Something transient went wrong: the host retries the record, then dead-letters it. */
export class InfrastructureError extends Error {
  constructor(message: string);
}

/** The plugin was not granted the table: a bug to fix, not data to retry. */
export class LookupNotGranted extends DomainError {}

/** The table cannot be read now: the records that needed it are retried. */
export class LookupUnavailable extends InfrastructureError {}

/** A JSON value as `Record.json()` returns it. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A value `Output.json` writes: JSON, with `bigint` for integers past 2^53. */
export type JsonOut =
  | null
  | boolean
  | number
  | bigint
  | string
  | JsonOut[]
  | { [key: string]: JsonOut | undefined };

/** One input record. */
export class Record {
  constructor(payload: Uint8Array | string, key?: Uint8Array | string | null, attributes?: [string, string][]);
  /** The payload bytes. */
  readonly payload: Uint8Array;
  /** The key the source gave it (a Kinesis partition key, a Kafka key), if any. */
  readonly key: Uint8Array | null;
  /** Attributes the host set (`source`, `stream`, `shard`, `line`, ...). */
  readonly attributes: [string, string][];
  /** The payload as UTF-8 text; not UTF-8 is a `DomainError`. */
  text(): string;
  /** The payload parsed as JSON, strictly; not JSON is a `DomainError`. */
  json(): Json;
  /** The attribute `name`'s value, or `null`. */
  attribute(name: string): string | null;
}

/** One output record. */
export class Output {
  constructor(payload: Uint8Array | string);
  payload: Uint8Array;
  key: Uint8Array | null;
  destination: string | null;
  attributes: [string, string][];
  /** An output whose payload is `value` as compact JSON. */
  static json(value: JsonOut): Output;
  /** The key the sink partitions by. */
  withKey(key: Uint8Array | string): Output;
  /** The named destination (a sink); none: the default sink. */
  to(destination: string): Output;
  withAttribute(name: string, value: string): Output;
}

/** `value` as compact JSON, as serde_json writes it. */
export function toJson(value: JsonOut): string;

/** The plugin's settings. */
export class Config {
  constructor(pairs?: [string, string][]);
  get(name: string): string | null;
  get(name: string, fallback: string): string;
  /** The setting as a number, or `fallback`; a bad value is a `DomainError`. */
  number(name: string, fallback: number): number;
}

/** The plugin's settings, as `init` received them. */
export function config(): Config;

/** Structured log lines, tagged by the host with the plugin's name and version. */
export const log: {
  trace(message: unknown): void;
  debug(message: unknown): void;
  info(message: unknown): void;
  warn(message: unknown): void;
  error(message: unknown): void;
};

/** Adds `delta` to the counter `name`. */
export function counter(name: string, delta?: number | bigint): void;

/** Sets the gauge `name` to `value`. */
export function gauge(name: string, value: number): void;

/** What one `lookup` found, by key. */
export class Found {
  get(key: string): Uint8Array | null;
  json(key: string): Json;
  has(key: string): boolean;
  readonly size: number;
}

/** Looks `keys` up in `table` with one call to the host. */
export function lookup(table: string, keys: Iterable<string>): Found;

/** For unit tests: fills `table` with `rows`. */
export function stubTable(table: string, rows: { [key: string]: JsonOut }): void;

/** For unit tests: makes `table` fail as unavailable. */
export function stubUnavailable(table: string, why: string): void;

/** What `transform` may answer: one output, several, or none (dropped on purpose). */
export type Answer = Output | Output[] | null | undefined;

/** A plugin's parts. */
export interface PluginParts<Prepared = never> {
  name: string;
  version: string;
  /** Transforms one record; with `prepare`, also gets what it returned for the batch. */
  transform(record: Record, prepared: Prepared): Answer;
  /** Checks the settings once per instance; throw `DomainError` to refuse them. */
  init?(config: Config): void;
  /** Runs once per batch before `transform` (to look the batch's keys up once). */
  prepare?(records: Record[]): Prepared;
}

/** The contract's exports, as `plugin` makes them. */
export interface Plugin {
  info(): { name: string; version: string };
  init(config: [string, string][]): void;
  transform(batch: { bytes: Uint8Array; records: Uint32Array; attributes: Uint32Array }): unknown;
}

/** A plugin: export it as the module's default. */
export function plugin<Prepared = never>(parts: PluginParts<Prepared>): Plugin;

/** Binds the host's imports (the component's entry calls it). */
export function bindHost(host: unknown, lookup: unknown): void;

/** An error the contract carries: `domain` or `infrastructure`, and its message. */
export interface ContractError {
  tag: 'domain' | 'infrastructure';
  val: string;
}

/** For unit tests: runs `plugin` over `inputs` as the host would, after `init(pairs)`. */
export function runBatch(
  plugin: Plugin,
  inputs: (Record | string)[],
  pairs?: [string, string][],
): ({ outputs: Output[]; error?: undefined } | { error: ContractError; outputs?: undefined })[];
