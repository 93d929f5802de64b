// A provider's settings and secrets: values `env:NAME` are read from the environment, once, at
// load. The provider-config file of the command line is the Rust embedding example's TOML:
// `plugin` (relative to the file), `[settings]` (with `base_url`), `[secrets]`.

import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

import { parse } from 'smol-toml';

import { ConfigError } from './errors.mjs';

/** `value`, or the environment variable it names with `env:NAME`. */
function resolveValue(key, value, env) {
  if (typeof value !== 'string') throw new ConfigError(`${key}: must be a string`);
  if (!value.startsWith('env:')) return value;
  const name = value.slice('env:'.length);
  const found = env[name];
  if (found === undefined) throw new ConfigError(`${key}: environment variable ${name} is not set`);
  return found;
}

/**
 * `{settings, secrets}` (plain objects of strings) with every `env:NAME` resolved, as two Maps.
 * Secrets are what every log line and answer is cleaned of.
 */
export function resolveConfig(config = {}, env = process.env) {
  const settings = new Map();
  const secrets = new Map();
  for (const [table, into] of [
    ['settings', settings],
    ['secrets', secrets],
  ]) {
    const values = config[table] ?? {};
    if (values === null || typeof values !== 'object') throw new ConfigError(`${table} must be a table of strings`);
    for (const [key, value] of Object.entries(values)) into.set(key, resolveValue(key, value, env));
  }
  const unknown = Object.keys(config).filter((k) => !['settings', 'secrets'].includes(k));
  if (unknown.length > 0) throw new ConfigError(`unknown provider config key ${unknown[0]}`);
  return { settings, secrets };
}

/** The provider-config file at `path`: `{plugin, config}`, the plugin's path resolved against
 * the file's folder. */
export function readProviderFile(path) {
  let text;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`${path}: ${e.message}`);
  }
  let file;
  try {
    file = parse(text);
  } catch (e) {
    throw new ConfigError(`${path}: ${e.message}`);
  }
  const { plugin, settings = {}, secrets = {}, ...rest } = file;
  const extra = Object.keys(rest)[0];
  if (extra !== undefined) throw new ConfigError(`${path}: unknown field \`${extra}\``);
  if (typeof plugin !== 'string') throw new ConfigError(`${path}: missing field \`plugin\``);
  return { plugin: resolve(dirname(path), plugin), config: { settings, secrets } };
}
