// A component as JavaScript: jco transpiles it (once) into an ES module plus its core wasm,
// instantiated with the imports this gateway supplies. Outputs are kept under `generated/<sha256
// of the component>/`, so a component is found by its bytes wherever its file lies, and a rebuilt
// component is never run from a stale translation. `npm run transpile` fills the folder ahead of
// time; a component not yet there is transpiled on first load when jco (a dev dependency) is
// installed.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ConfigError } from './errors.mjs';

const PACKAGE = dirname(dirname(fileURLToPath(import.meta.url)));

/** Where transpiled components are kept. */
export const GENERATED = process.env.REFUNDRY_JS_CACHE ?? join(PACKAGE, 'generated');

/** The contract's interfaces, the only imports a plugin may have. */
const CONTRACT_IMPORTS = ['clock', 'config', 'crypto', 'http', 'log', 'storage'].map((i) => `refundry:provider/${i}`);
/** The contract versions this gateway implements: its imports are the same functions in each
 * (0.1.0 lacks `crypto`). */
const CONTRACT_VERSIONS = ['0.1.0', '0.2.0'];

/** `{entry, dir, contract}` of the component in `file`: its ES module, the folder of its core
 * modules, and the contract version it was built against. */
export async function transpiled(file) {
  let bytes;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new ConfigError(`cannot read plugin ${file}: ${e.message}`);
  }
  const dir = join(GENERATED, createHash('sha256').update(bytes).digest('hex'));
  if (!existsSync(join(dir, 'meta.json'))) await transpileInto(bytes, dir, file);
  const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
  return { entry: join(dir, 'component.js'), dir, contract: meta.contract };
}

/** Transpiles the component `bytes` (read from `file`) into `dir`, checking it is a plugin of a
 * contract version this gateway implements. */
async function transpileInto(bytes, dir, file) {
  let jco;
  try {
    jco = await import('@bytecodealliance/jco');
  } catch {
    throw new ConfigError(
      `${file} is not transpiled for JavaScript, and jco is not installed: run \`npm ci\` and ` +
        `\`npm run transpile -- ${file}\` in examples/node-gateway`,
    );
  }
  let out;
  try {
    out = await jco.transpile(bytes, {
      name: 'component',
      instantiation: { tag: 'async' },
      noTypescript: true,
      quiet: true,
    });
  } catch (e) {
    throw new ConfigError(`${file}: not a valid WebAssembly component: ${e.message ?? e}`);
  }
  const contract = contractOf(out, file);
  const tmp = `${dir}.tmp-${process.pid}-${Math.random().toString(16).slice(2)}`;
  mkdirSync(tmp, { recursive: true });
  for (const [name, data] of Object.entries(out.files)) {
    if (name.endsWith('.js') || name.endsWith('.wasm')) writeFileSync(join(tmp, name), data);
  }
  writeFileSync(join(tmp, 'meta.json'), JSON.stringify({ contract, imports: out.imports }));
  try {
    renameSync(tmp, dir);
  } catch (e) {
    // Another process transpiled the same component first: its output is as good.
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(join(dir, 'meta.json'))) throw e;
  }
}

/** The contract version a transpiled component exports its provider at; a ConfigError when it
 * imports anything the contract does not grant or exports no provider. */
function contractOf(out, file) {
  const foreign = out.imports.filter((i) => !CONTRACT_IMPORTS.includes(i));
  if (foreign.length > 0) {
    throw new ConfigError(`${file} imports ${foreign.join(', ')}, which the contract does not grant`);
  }
  for (const version of CONTRACT_VERSIONS) {
    if (out.exports.some(([name]) => name === `refundry:provider/provider@${version}`)) return version;
  }
  const exported = out.exports.map(([name]) => name).join(', ') || 'nothing';
  throw new ConfigError(
    `${file} exports ${exported}, not the provider interface of a contract this gateway implements (${CONTRACT_VERSIONS.join(', ')})`,
  );
}
