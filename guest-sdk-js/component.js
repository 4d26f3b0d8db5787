// The component's entry, written beside the plugin by `build.mjs`: binds the host's
// functions to the SDK and exports the plugin's functions under the contract's names
// (`wit/plugin.wit`, world `transform`).
import * as host from 'pipeline:plugin/host@0.2.0';
import * as lookup from 'pipeline:plugin/lookup@0.2.0';
import { bindHost } from './sdk/pipeline-plugin.js';
import thePlugin from './app.js';

bindHost(host, lookup);

export function info() {
  return thePlugin.info();
}

export function init(config) {
  return thePlugin.init(config);
}

export function transform(batch) {
  return thePlugin.transform(batch);
}
