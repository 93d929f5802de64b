// The command line against the Rust embedding example's: the same arguments give the same JSON
// on stdout and the same exit code, so scripts can use either gateway.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { REFUNDRY, control, pluginPath, randomHex, seed, startSandbox, webhookReceiver } from './support.mjs';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '../cli.mjs');
const EMBED = process.env.EMBED_GATEWAY_BIN ?? join(dirname(REFUNDRY), 'embed-gateway');

/** `{code, stdout (parsed, or null), raw, stderr}` of one gateway run. */
function run(command, args, env) {
  return new Promise((resolve) => {
    execFile(command[0], [...command.slice(1), ...args], { env: { PATH: process.env.PATH, ...env } }, (error, stdout, stderr) => {
      let parsed = null;
      try {
        parsed = JSON.parse(stdout);
      } catch {}
      resolve({ code: error ? error.code : 0, stdout: parsed, raw: stdout, stderr });
    });
  });
}

const node = (args, env) => run([process.execPath, CLI], args, env);
const rust = (args, env) => run([EMBED], args, env);

/** Both gateways on the same arguments; the trace ids a provider puts in each answer aside, the
 * same output and exit code. Returns the Node gateway's run. */
async function both(args, env, expectedCode) {
  const js = await node(args, env);
  const rs = await rust(args, env);
  const mask = (s) => s.replace(/tr_[0-9a-f]+/g, 'tr_*');
  assert.equal(js.code, expectedCode, `node: ${js.raw} ${js.stderr}`);
  assert.equal(rs.code, expectedCode, `rust: ${rs.raw} ${rs.stderr}`);
  assert.equal(mask(js.raw), mask(rs.raw));
  return js;
}

let sandbox;
let receiver;
let dir;
let config;
const txn = `txn_cli_${randomHex(3)}`;

before(async () => {
  receiver = await webhookReceiver();
  sandbox = await startSandbox('mfs-africa', `${receiver.url}/mfs-africa`);
  await seed('mfs-africa', sandbox.baseUrl, txn, '100.00', 'KES');
  dir = mkdtempSync(join(tmpdir(), 'refundry-node-cli-'));
  copyFileSync(pluginPath('mfs-africa'), join(dir, 'mfs-africa.wasm'));
  config = join(dir, 'mfs-africa.toml');
  // Secrets from the environment, as a gateway keeps them.
  writeFileSync(
    config,
    `plugin = "mfs-africa.wasm"\n[settings]\nbase_url = "${sandbox.baseUrl}"\n` +
      `[secrets]\napi_key = "env:MFS_AFRICA_API_KEY"\napi_secret = "env:MFS_AFRICA_API_SECRET"\n` +
      `webhook_secret = "env:MFS_AFRICA_WEBHOOK_SECRET"\n`,
  );
});
after(() => {
  sandbox?.stop();
  receiver?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const create = (id, amount) => [
  '--provider-config', config, 'create', '--original-transaction-id', txn,
  '--amount-minor', String(amount), '--currency', 'KES', '--external-refund-id', id,
];

test('create, replay, get, refusal and webhooks answer alike in both gateways', async () => {
  const env = sandbox.env;
  const created = await node(create('cli-1', 6000), env);
  assert.equal(created.code, 0, created.raw + created.stderr);
  assert.equal(created.stdout.external_refund_id, 'cli-1');
  assert.equal(created.stdout.amount_minor, 6000);
  for (const secret of Object.values(env)) assert.ok(!created.stderr.includes(secret), created.stderr);
  const id = created.stdout.provider_refund_id;

  // The replay through either gateway is the same refund, printed byte for byte alike.
  await both(create('cli-1', 6000), env, 0);
  const found = await both(['--provider-config', config, 'get', '--external-refund-id', 'cli-1'], env, 0);
  assert.equal(found.stdout.provider_refund_id, id);
  const over = await both(create('cli-2', 6000), env, 1);
  assert.equal(over.stdout.refused.kind, 'amount-exceeded');
  const conflict = await both(create('cli-1', 5000), env, 1);
  assert.equal(conflict.stdout.refused.kind, 'idempotency-conflict');

  // A real webhook verifies; the same altered does not.
  await control(sandbox.baseUrl, `refunds/${id}/status`, { status: 'processed' });
  const delivery = await receiver.next();
  const headers = join(dir, 'headers.json');
  const body = join(dir, 'body');
  writeFileSync(headers, JSON.stringify(delivery.headers));
  writeFileSync(body, delivery.body);
  const webhook = ['--provider-config', config, 'webhook', '--headers-json', headers, '--body', body];
  const event = await both(webhook, env, 0);
  assert.equal(event.stdout.refund.provider_refund_id, id);
  assert.equal(event.stdout.refund.status, 'processed');
  writeFileSync(body, delivery.body.toString().replace('processed', 'reversed'));
  const forged = await both(webhook, env, 1);
  assert.deepEqual(forged.stdout, { rejected: { reason: 'invalid_signature' } });
});

test('an unreachable provider is not final: exit 3 in both', async () => {
  const offline = join(dir, 'offline.toml');
  writeFileSync(offline, `plugin = "mfs-africa.wasm"\n[settings]\nbase_url = "http://127.0.0.1:9"\n[secrets]\napi_key = "key-1"\napi_secret = "secret-1"\n`);
  // The transport's own words differ (reqwest, node:http); the case and the code do not.
  for (const gateway of [node, rust]) {
    const answer = await gateway(['--provider-config', offline, 'get', '--external-refund-id', 'x'], {});
    assert.equal(answer.code, 3, answer.raw + answer.stderr);
    assert.match(answer.stdout.retryable.message, /^http: HttpError::ConnectFailed\(/, answer.raw);
  }
});

test('usage and configuration errors exit 2 in both', async () => {
  const env = sandbox.env;
  const unset = join(dir, 'unset.toml');
  writeFileSync(unset, `plugin = "mfs-africa.wasm"\n[settings]\nbase_url = "http://127.0.0.1:9"\n[secrets]\napi_secret = "env:NOT_SET_HERE"\n`);
  const noBase = join(dir, 'no-base.toml');
  writeFileSync(noBase, `plugin = "mfs-africa.wasm"\n[settings]\napi_key = "k"\n`);
  const cases = [
    [['--provider-config', unset, 'get', '--external-refund-id', 'x'], /NOT_SET_HERE/],
    [['--provider-config', join(dir, 'nope.toml'), 'get', '--external-refund-id', 'x'], /nope\.toml/],
    [['--provider-config', noBase, 'get', '--external-refund-id', 'x'], /base_url/],
    [create('x', 'ten'), /amount-minor/],
    [['--provider-config', config, 'get'], /external-refund-id/],
    [['--provider-config', config, 'refund'], /refund/],
    [['get', '--external-refund-id', 'x'], /provider-config/],
    [['--provider-config', config, 'webhook', '--headers-json', join(dir, 'none.json'), '--body', join(dir, 'none')], /none\.json/],
  ];
  for (const [args, message] of cases) {
    const js = await node(args, env);
    const rs = await rust(args, env);
    assert.equal(js.code, 2, `${args.join(' ')}: ${js.stderr}`);
    assert.equal(rs.code, 2, `rust ${args.join(' ')}: ${rs.stderr}`);
    assert.equal(js.raw, '');
    assert.match(js.stderr, message);
  }
});

test('bench times create-refund round trips alike in both', async () => {
  const env = sandbox.env;
  const bigTxn = `txn_bench_${randomHex(3)}`;
  await seed('mfs-africa', sandbox.baseUrl, bigTxn, '1000.00', 'KES');
  const args = (prefix) => [
    '--provider-config', config, 'bench', '--original-transaction-id', bigTxn, '--amount-minor', '100',
    '--currency', 'KES', '--count', '4', '--external-refund-id-prefix', prefix,
  ];
  for (const gateway of [node, rust]) {
    const timed = await gateway(args(`b-${randomHex(3)}`), env);
    assert.equal(timed.code, 0, timed.raw + timed.stderr);
    assert.deepEqual(Object.keys(timed.stdout), ['count', 'max_us', 'mean_us', 'min_us', 'p50_us', 'p99_us']);
    assert.equal(timed.stdout.count, 4);
    const { min_us, p50_us, p99_us, max_us } = timed.stdout;
    assert.ok(min_us > 0 && min_us <= p50_us && p50_us <= p99_us && p99_us <= max_us, timed.raw);
  }
  const zero = await node([...args('z').slice(0, -4), '--count', '0', '--external-refund-id-prefix', 'z'], env);
  assert.equal(zero.code, 2);
});
