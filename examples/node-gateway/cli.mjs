#!/usr/bin/env node
// The Rust embedding example's command line (`examples/embed-gateway`), in JavaScript: the same
// arguments, the same JSON on stdout and the same exit codes, so either gateway can stand in for
// the other in a script.
//
//   node cli.mjs --provider-config FILE create --original-transaction-id T --amount-minor N \
//       --currency C --external-refund-id X [--reason R] [--order-id O]
//   node cli.mjs --provider-config FILE get --external-refund-id X
//   node cli.mjs --provider-config FILE webhook --headers-json FILE --body FILE
//   node cli.mjs --provider-config FILE bench --original-transaction-id T --amount-minor N \
//       --currency C --count K --external-refund-id-prefix P [--reason R] [--order-id O]
//
// Exit codes: 0 and the refund (or webhook event; a list for a batch, `{"ignored": ..}` for an
// event type the plugin does not handle; the bench's timings) as JSON; 1 and the provider's
// refusal (or the webhook's rejection) as JSON; 2 on a usage or configuration error; 3 and the
// error as JSON when there is no final answer (retryable, outcome unknown, plugin failure).

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { readProviderFile } from './src/config.mjs';
import { ConfigError, PluginFailure, RefundError, WebhookRejected, loadPlugin } from './src/index.mjs';
import { integer } from './src/wire.mjs';

const USAGE = `A gateway using a Refundry provider plugin through jco, in Node.js

Usage: node cli.mjs --provider-config <FILE> <COMMAND>

Commands:
  create   Asks the provider to refund
  get      Looks a refund up by the gateway's id for it
  webhook  Verifies and parses a webhook the provider sent
  bench    Times create-refund round trips (one warm-up refund, then --count more)

Options:
  --provider-config <FILE>  The provider's TOML: \`plugin\`, [settings] (with base_url), [secrets]
  -h, --help                Print help`;

const REFUND_OPTIONS = {
  'original-transaction-id': { type: 'string' },
  'amount-minor': { type: 'string' },
  currency: { type: 'string' },
  'external-refund-id': { type: 'string' },
  reason: { type: 'string' },
  'order-id': { type: 'string' },
};

const COMMANDS = {
  create: { options: REFUND_OPTIONS, required: ['original-transaction-id', 'amount-minor', 'currency', 'external-refund-id'] },
  get: { options: { 'external-refund-id': { type: 'string' } }, required: ['external-refund-id'] },
  webhook: { options: { 'headers-json': { type: 'string' }, body: { type: 'string' } }, required: ['headers-json', 'body'] },
  bench: {
    options: { ...REFUND_OPTIONS, count: { type: 'string' }, 'external-refund-id-prefix': { type: 'string' } },
    required: ['original-transaction-id', 'amount-minor', 'currency', 'count', 'external-refund-id-prefix'],
  },
};

/** `{configPath, command, values}` of the command line; a ConfigError for a usage error. */
function parse(argv) {
  let configPath;
  let i = 0;
  for (; i < argv.length && argv[i].startsWith('-'); i++) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') return { help: true };
    if (arg === '--provider-config' && i + 1 < argv.length) configPath = argv[++i];
    else if (arg.startsWith('--provider-config=')) configPath = arg.slice('--provider-config='.length);
    else throw new ConfigError(`unexpected argument '${arg}'\n\n${USAGE}`);
  }
  const command = argv[i];
  if (command === undefined) throw new ConfigError(`a command is required\n\n${USAGE}`);
  const spec = COMMANDS[command];
  if (spec === undefined) throw new ConfigError(`unrecognized subcommand '${command}'\n\n${USAGE}`);
  if (argv.slice(i + 1).some((a) => a === '-h' || a === '--help')) return { help: true };
  if (configPath === undefined) throw new ConfigError('the following required argument was not provided: --provider-config <FILE>');
  let values;
  try {
    ({ values } = parseArgs({ args: argv.slice(i + 1), options: spec.options, strict: true, allowPositionals: false }));
  } catch (e) {
    throw new ConfigError(`${command}: ${e.message}`);
  }
  const missing = spec.required.filter((name) => values[name] === undefined);
  if (missing.length > 0) {
    throw new ConfigError(`${command}: the following required arguments were not provided: ${missing.map((m) => `--${m}`).join(' ')}`);
  }
  return { configPath, command, values };
}

function read(path) {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ConfigError(`${path}: ${e.message}`);
  }
}

function refundRequest(v, externalRefundId = v['external-refund-id']) {
  return {
    original_transaction_id: v['original-transaction-id'],
    external_refund_id: externalRefundId,
    amount_minor: integer(v['amount-minor'], '--amount-minor'),
    currency: v.currency,
    reason: v.reason,
    order_id: v['order-id'],
  };
}

/** `[exit code, JSON]` of an operation that failed: the error's own answer. */
function failure(e) {
  if (e instanceof RefundError) return [e.final ? 1 : 3, e.answer];
  if (e instanceof WebhookRejected) return [1, e.answer];
  if (e instanceof PluginFailure) return [3, e.answer];
  throw e;
}

async function run({ configPath, command, values }) {
  const { plugin: file, config } = readProviderFile(configPath);
  if (config.settings?.base_url === undefined) throw new ConfigError(`${configPath}: [settings] has no base_url`);
  const plugin = await loadPlugin(file, config);
  try {
    switch (command) {
      case 'create':
        return [0, await plugin.createRefund(refundRequest(values))];
      case 'get':
        return [0, await plugin.getRefund({ external_refund_id: values['external-refund-id'] })];
      case 'webhook':
        return await webhook(plugin, values);
      default:
        return await bench(plugin, values);
    }
  } catch (e) {
    return failure(e);
  }
}

async function webhook(plugin, values) {
  const path = values['headers-json'];
  let headers;
  try {
    headers = JSON.parse(read(path).toString('utf8'));
  } catch (e) {
    throw e instanceof ConfigError ? e : new ConfigError(`${path}: ${e.message}`);
  }
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers) || Object.values(headers).some((v) => typeof v !== 'string')) {
    throw new ConfigError(`${path}: must be a JSON object of header names and string values`);
  }
  const body = read(values.body);
  // The delivery as this command line has it: a POST whose path this gateway does not know (no
  // provider the runtime ships signs the path). Headers in name order, as the Rust example.
  const sorted = Object.entries(headers).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const outcome = await plugin.parseWebhook({ method: 'POST', path: '/', headers: sorted, body });
  if ('ignored' in outcome) return [0, { ignored: outcome.ignored }];
  return [0, outcome.events.length === 1 ? outcome.events[0] : outcome.events];
}

/** One untimed warm-up refund `P-0`, then `--count` refunds `P-1`..`P-K`, each timed from the
 * call to its answer. */
async function bench(plugin, values) {
  const count = Number(integer(values.count, '--count'));
  if (count < 1) throw new ConfigError('bench: --count must be at least 1');
  const prefix = values['external-refund-id-prefix'];
  await plugin.createRefund(refundRequest(values, `${prefix}-0`));
  const us = [];
  for (let i = 1; i <= count; i++) {
    const request = refundRequest(values, `${prefix}-${i}`);
    const started = process.hrtime.bigint();
    await plugin.createRefund(request);
    us.push(Number(process.hrtime.bigint() - started) / 1000);
  }
  us.sort((a, b) => a - b);
  const at = (q) => us[Math.ceil(q * count) - 1];
  const mean = us.reduce((a, b) => a + b, 0) / count;
  return [0, { count, mean_us: mean, p50_us: at(0.5), p99_us: at(0.99), min_us: us[0], max_us: us[count - 1] }];
}

/** JSON as serde_json prints it (`{:#}`): two-space indent, object keys in sorted order. */
function pretty(value) {
  const sort = (v) => {
    if (Array.isArray(v)) return v.map(sort);
    if (v === null || typeof v !== 'object') return v;
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, sort(v[k])]),
    );
  };
  return JSON.stringify(sort(value), null, 2);
}

async function main() {
  let parsed;
  try {
    parsed = parse(process.argv.slice(2));
    if (parsed.help) {
      console.log(USAGE);
      return 0;
    }
    const [code, answer] = await run(parsed);
    process.stdout.write(`${pretty(answer)}\n`);
    return code;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`node-gateway: ${e.message}\n`);
    return 2;
  }
}

process.exitCode = await main();
