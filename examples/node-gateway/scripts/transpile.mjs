// `npm run transpile -- [DIR | FILE.wasm]...`: transpiles each plugin component (every `.wasm`
// of a folder) for JavaScript ahead of time, into `generated/<sha256>/`. With no argument:
// `$REFUNDRY_PLUGINS_DIR`, else the workspace's `target/plugins/`, where `cargo xtask
// build-plugins` writes them.

import { readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { transpiled } from '../src/transpiled.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const targets = args.length > 0 ? args : [process.env.REFUNDRY_PLUGINS_DIR ?? join(here, '../../../target/plugins')];

const files = targets.flatMap((target) => {
  const path = resolve(target);
  if (!statSync(path, { throwIfNoEntry: false })?.isDirectory()) return [path];
  return readdirSync(path)
    .filter((name) => name.endsWith('.wasm'))
    .sort()
    .map((name) => join(path, name));
});
if (files.length === 0) {
  console.error(`transpile: no .wasm component in ${targets.join(', ')}: run \`cargo xtask build-plugins\` first`);
  process.exit(2);
}
let failed = 0;
for (const file of files) {
  try {
    const { dir, contract } = await transpiled(file);
    console.log(`${file} (contract ${contract}) -> ${dir}`);
  } catch (e) {
    console.error(`transpile: ${e.message}`);
    failed += 1;
  }
}
process.exit(failed > 0 ? 1 : 0);
