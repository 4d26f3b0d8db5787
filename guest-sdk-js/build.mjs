#!/usr/bin/env node
// Builds a JavaScript or TypeScript plugin into a WebAssembly component:
//
//     node build.mjs [PROJECT] [--out FILE.wasm] [--wit DIR]
//
// PROJECT (default: here) holds `app.js` or `app.ts` (its default export a `plugin(...)`),
// the modules it imports, and `sdk/` (this SDK). They are copied to a scratch folder
// (TypeScript transpiled to JavaScript; `npm test` type-checks it), the entry that binds
// the host's functions (`sdk/component.js`) is put beside them, and componentize-js
// builds the component against the contract's world `transform` (WIT in `--wit`,
// default `PROJECT/wit`). WASI's HTTP is left out: a plugin talks to the outside world
// only through the host.

import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { out: { type: 'string' }, wit: { type: 'string' } },
});
const project = resolve(positionals[0] ?? '.');
const out = resolve(values.out ?? join(project, 'dist', `${basename(project)}.wasm`));
const wit = resolve(values.wit ?? join(project, 'wit'));
const sdk = existsSync(join(project, 'sdk', 'pipeline-plugin.js'))
  ? join(project, 'sdk')
  : dirname(fileURLToPath(import.meta.url));
const typescript = existsSync(join(project, 'app.ts'));
if (!typescript && !existsSync(join(project, 'app.js'))) {
  console.error(`error: ${project} has no app.js or app.ts`);
  process.exit(1);
}

// Only the plugin's own modules: not the project's tests, dependencies or builds (folders
// of those names at its top; a module's own `lib/test/` is the module's).
const skipped = new Set(['node_modules', 'dist', 'build', 'test', 'tests', 'wit', 'sdk']);
async function copySources(from, to, top = true) {
  await mkdir(to, { recursive: true });
  for (const entry of await readdir(from, { withFileTypes: true })) {
    if ((top && skipped.has(entry.name)) || entry.name.startsWith('.')) continue;
    const source = join(from, entry.name);
    if (entry.isDirectory()) {
      await copySources(source, join(to, entry.name), false);
    } else if (/\.(js|mjs|ts)$/.test(entry.name) && !/\.(test|d)\.[jt]s$/.test(entry.name) && entry.name !== 'build.mjs') {
      await cp(source, join(to, entry.name), { dereference: true });
    }
  }
}

const scratch = await mkdtemp(join(tmpdir(), 'plugin-js-'));
try {
  await copySources(project, scratch);
  await mkdir(join(scratch, 'sdk'));
  await cp(join(sdk, 'pipeline-plugin.js'), join(scratch, 'sdk', 'pipeline-plugin.js'), { dereference: true });
  if (typescript) {
    const ts = (await import('typescript')).default;
    const transpile = async (folder) => {
      for (const entry of await readdir(folder, { withFileTypes: true })) {
        const path = join(folder, entry.name);
        if (entry.isDirectory()) {
          await transpile(path);
        } else if (entry.name.endsWith('.ts')) {
          const { outputText } = ts.transpileModule(await readFile(path, 'utf8'), {
            compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 },
            fileName: entry.name,
          });
          await writeFile(path.replace(/\.ts$/, '.js'), outputText);
          await rm(path);
        }
      }
    };
    await transpile(scratch);
  }
  await cp(join(sdk, 'component.js'), join(scratch, 'component.js'), { dereference: true });
  const { componentize } = await import('@bytecodealliance/componentize-js');
  const { component } = await componentize({
    sourcePath: join(scratch, 'component.js'),
    witPath: wit,
    worldName: 'transform',
    disableFeatures: ['http', 'fetch-event'],
  });
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, component);
  console.error(`built ${out} (${(component.length / 1048576).toFixed(1)} MB)`);
} finally {
  await rm(scratch, { recursive: true, force: true });
}
