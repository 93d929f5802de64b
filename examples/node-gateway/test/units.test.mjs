// The host policy's parts, each on its own: the origin and header checks, secret redaction, the
// answer caps, the provider config, the storage quotas, the blocking host call.

import assert from 'node:assert/strict';
import { MessageChannel, Worker } from 'node:worker_threads';
import { test } from 'node:test';

import { resolveConfig } from '../src/config.mjs';
import { ConfigError, PluginFailure } from '../src/errors.mjs';
import { serveHostCalls } from '../src/hostcall.mjs';
import { check, parseOrigin } from '../src/policy.mjs';
import { Redactor, credentialsIn, namesACredential } from '../src/redact.mjs';
import { MemoryStore, TooLarge, storageCall } from '../src/storage.mjs';
import { MAX_ID, MAX_MESSAGE, Sanitizer, TRUNCATED, integer, refund } from '../src/wire.mjs';

const get = (url, headers = []) => ({ method: 'get', url, headers, body: undefined });

test('only the configured origin is allowed', () => {
  const origin = parseOrigin('http://127.0.0.1:8080/v1');
  assert.equal(check(origin, get('http://127.0.0.1:8080/v1/refunds?x=1')).tag, 'ok');
  for (const other of [
    'http://127.0.0.2:8080/v1',
    'http://127.0.0.1:8081/v1',
    'https://127.0.0.1:8080/v1',
    'http://localhost:8080/v1',
    'http://user:pw@127.0.0.1:8080/v1',
  ]) {
    assert.equal(check(origin, get(other)).val.tag, 'denied', other);
  }
  assert.equal(check(origin, get('not a url')).val.tag, 'invalid-request');
  assert.equal(check(null, get('http://127.0.0.1:8080/')).val.tag, 'denied');
});

test('default ports compare equal', () => {
  assert.equal(check(parseOrigin('https://api.example'), get('https://api.example:443/v1')).tag, 'ok');
  assert.equal(check(parseOrigin('http://api.example:80'), get('http://api.example/v1')).tag, 'ok');
});

test('host and hop-by-hop headers are refused; bad ones are invalid', () => {
  const origin = parseOrigin('http://127.0.0.1:8080');
  for (const h of ['Host', 'content-length', 'Transfer-Encoding', 'Connection', 'Upgrade', 'TE', 'Proxy-Authorization']) {
    assert.equal(check(origin, get('http://127.0.0.1:8080/', [[h, 'x']])).val.tag, 'denied', h);
  }
  assert.equal(check(origin, get('http://127.0.0.1:8080/', [['X-Api-Key', 'k']])).tag, 'ok');
  assert.equal(check(origin, get('http://127.0.0.1:8080/', [['bad name', 'k']])).val.tag, 'invalid-request');
  assert.equal(check(origin, get('http://127.0.0.1:8080/', [['X-A', 'a\r\nInjected: 1']])).val.tag, 'invalid-request');
});

test('a base_url that is no http(s) url is a configuration error', () => {
  assert.throws(() => parseOrigin('ftp://example'), ConfigError);
  assert.throws(() => parseOrigin('nope'), ConfigError);
});

test('secrets are redacted longest first; credential names are recognised', () => {
  const r = new Redactor(['abc', 'abcdef', '']);
  assert.equal(r.redact('x abcdef y abc z'), 'x [redacted] y [redacted] z');
  assert.equal(new Redactor(['']).redact('text'), 'text');
  for (const name of ['access_token', 'authToken', 'X-Api-Key', 'secret', 'Authorization', 'client.credentials']) {
    assert.ok(namesACredential(name), name);
  }
  for (const name of ['tokenExpires', 'keys_count', 'amount']) assert.ok(!namesACredential(name), name);
  const body = Buffer.from(JSON.stringify({ data: { token: 'A'.repeat(20), short_token: 'x', expires: 'B'.repeat(20) } }));
  assert.deepEqual(credentialsIn(body), ['A'.repeat(20)]);
  assert.deepEqual(credentialsIn(Buffer.from('not json')), []);
});

test('answers lose secrets, ids over the cap fail, long messages are cut', () => {
  const s = new Sanitizer(new Redactor(['s3cret-value']), 'p', 'create-refund');
  const base = {
    providerRefundId: 'r-1',
    originalTransactionId: 't',
    amount: { amountMinor: 150000n, currency: 'KES' },
    status: 'failed',
    providerStatus: 'failed',
    failureReason: 'rejected because s3cret-value',
  };
  const json = refund(base, s);
  assert.equal(json.failure_reason, 'rejected because [redacted]');
  assert.equal(json.amount_minor, 150000);
  assert.equal(json.external_refund_id, null);
  assert.equal(json.created_at, null);
  assert.throws(() => refund({ ...base, providerRefundId: 'x'.repeat(MAX_ID + 1) }, s), PluginFailure);
  // An amount a JS number cannot hold exactly is refused, never rounded.
  assert.equal(refund({ ...base, amount: { amountMinor: 2n ** 53n - 1n, currency: 'KES' } }, s).amount_minor, 2 ** 53 - 1);
  assert.throws(() => refund({ ...base, amount: { amountMinor: 2n ** 53n + 1n, currency: 'KES' } }, s), /beyond the integers JavaScript holds exactly/);
  const long = refund({ ...base, failureReason: 'é'.repeat(MAX_MESSAGE) }, s).failure_reason;
  assert.ok(Buffer.byteLength(long) <= MAX_MESSAGE && long.endsWith(TRUNCATED), long.length);
  assert.ok(!long.includes('\uFFFD'));
});

test('amounts are integers within s64', () => {
  assert.equal(integer(5, 'a'), 5n);
  assert.equal(integer('-12', 'a'), -12n);
  assert.equal(integer(9223372036854775807n, 'a'), 9223372036854775807n);
  for (const bad of ['ten', 1.5, '1e3', 2n ** 63n, undefined, Number.MAX_SAFE_INTEGER + 2]) {
    assert.throws(() => integer(bad, 'a'), ConfigError, String(bad));
  }
});

test('env:NAME values come from the environment; an unset one is an error naming it', () => {
  const { settings, secrets } = resolveConfig(
    { settings: { base_url: 'http://x' }, secrets: { api_secret: 'env:MY_SECRET' } },
    { MY_SECRET: 'v' },
  );
  assert.equal(settings.get('base_url'), 'http://x');
  assert.equal(secrets.get('api_secret'), 'v');
  assert.throws(() => resolveConfig({ secrets: { k: 'env:NOT_SET_HERE' } }, {}), /k: environment variable NOT_SET_HERE is not set/);
  assert.throws(() => resolveConfig({ settings: { port: 8080 } }, {}), /port: must be a string/);
  assert.throws(() => resolveConfig({ setting: {} }, {}), /unknown provider config key setting/);
});

test('the memory store keeps its quotas', async () => {
  const store = new MemoryStore({ maxKeys: 2, maxBytes: 20 });
  assert.deepEqual(await storageCall(store, { op: 'get', key: 'token' }), { tag: 'ok', val: undefined });
  assert.equal((await storageCall(store, { op: 'set', key: 'token', value: Buffer.from('A') })).tag, 'ok');
  assert.deepEqual((await storageCall(store, { op: 'get', key: 'token' })).val, new Uint8Array(Buffer.from('A')));
  // 20 bytes: "token"+"A" take 6, a second key of 1 byte may hold 13.
  assert.deepEqual(await storageCall(store, { op: 'set', key: 'b', value: new Uint8Array(14) }), {
    tag: 'err',
    val: { tag: 'too-large', val: 13 },
  });
  assert.equal((await storageCall(store, { op: 'set', key: 'b', value: new Uint8Array(13) })).tag, 'ok');
  assert.deepEqual((await storageCall(store, { op: 'set', key: 'c', value: new Uint8Array(0) })).val, { tag: 'too-large', val: 0 });
  assert.equal((await storageCall(store, { op: 'delete', key: 'b' })).tag, 'ok');
  const failing = { get: () => Promise.reject(new Error('disk gone')) };
  assert.deepEqual(await storageCall(failing, { op: 'get', key: 'k' }), { tag: 'err', val: { tag: 'unavailable', val: 'disk gone' } });
  assert.ok(new TooLarge(3) instanceof Error);
});

/** A worker that makes one host call bounded by `waitMs` and reports what it got and how long
 * its thread was busy meanwhile (CPU time: a busy loop would show as much CPU as wall time). */
function callFromWorker(handlers, waitMs) {
  const { port1, port2 } = new MessageChannel();
  const counter = new SharedArrayBuffer(4);
  serveHostCalls(port2, counter, handlers);
  const source = `
    import { workerData, parentPort } from 'node:worker_threads';
    import { HostCaller } from ${JSON.stringify(new URL('../src/hostcall.mjs', import.meta.url).href)};
    const caller = new HostCaller(workerData.port, workerData.counter);
    const cpu = process.cpuUsage();
    const started = Date.now();
    const result = caller.call('echo', { n: 41 }, workerData.waitMs);
    const used = process.cpuUsage(cpu);
    parentPort.postMessage({ result, wallMs: Date.now() - started, cpuMs: (used.user + used.system) / 1000 });
  `;
  const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(source)}`), {
    workerData: { port: port1, counter, waitMs },
    transferList: [port1],
  });
  return new Promise((resolve, reject) => {
    worker.once('message', (m) => {
      worker.terminate();
      port2.close();
      resolve(m);
    });
    worker.once('error', reject);
  });
}

test("a host call waits for the gateway thread's async answer", async () => {
  const got = await callFromWorker({ echo: async ({ n }) => new Promise((r) => setTimeout(() => r({ n: n + 1 }), 200)) }, 5000);
  assert.deepEqual(got.result, { n: 42 });
  assert.ok(got.wallMs >= 190, JSON.stringify(got));
  // Asleep, not spinning, while it waited.
  assert.ok(got.cpuMs < got.wallMs / 2, JSON.stringify(got));
});

test('a host call that gets no answer gives up at its bound', async () => {
  const got = await callFromWorker({ echo: () => new Promise(() => {}) }, 300);
  assert.equal(got.result, undefined);
  assert.ok(got.wallMs >= 300 && got.wallMs < 3000, JSON.stringify(got));
  assert.ok(got.cpuMs < got.wallMs / 2, JSON.stringify(got));
});

test('the memory cap is written into the module: memory.grow stops at it', async () => {
  const { capMemory } = await import('../src/memory.mjs');
  // (module (memory (export "m") 1) (func (export "grow") (param i32) (result i32) local.get 0 memory.grow))
  const wasm = Uint8Array.from([
    0, 97, 115, 109, 1, 0, 0, 0, 1, 6, 1, 96, 1, 127, 1, 127, 3, 2, 1, 0, 5, 3, 1, 0, 1, 7, 12, 2, 1, 109, 2, 0, 4, 103,
    114, 111, 119, 0, 0, 10, 8, 1, 6, 0, 32, 0, 64, 0, 11,
  ]);
  const free = new WebAssembly.Instance(new WebAssembly.Module(wasm)).exports;
  assert.equal(free.grow(10), 1);
  const capped = new WebAssembly.Instance(new WebAssembly.Module(capMemory(wasm, 4 * 65536))).exports;
  assert.equal(capped.grow(3), 1);
  assert.equal(capped.grow(1), -1);
  assert.equal(capped.m.buffer.byteLength, 4 * 65536);
  assert.throws(() => capMemory(wasm, 0), /needs 65536 bytes of memory at start/);
});
