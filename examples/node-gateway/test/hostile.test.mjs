// What a plugin may not do in this gateway, shown with the deliberately hostile test plugin:
// reach another host, leak a secret into the log, run forever, or trap without it being said.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { PluginFailure, RefundError, loadPlugin } from '../src/index.mjs';
import { countingListener, pluginPath } from './support.mjs';

const SECRET = 'hunter2-the-hostile-api-secret';
let provider;
let other;
const lines = [];

before(async () => {
  // The plugin's own origin and another one, both counting the connections they get.
  provider = await countingListener();
  other = await countingListener();
});
after(() => {
  provider.close();
  other.close();
});

const request = (reason, id = reason) => ({
  original_transaction_id: 'txn_1',
  external_refund_id: `h-${id}`,
  amount_minor: 100,
  currency: 'KES',
  reason,
});

async function hostile(settings = {}, limits = {}) {
  return loadPlugin(
    pluginPath('hostile'),
    { settings: { base_url: provider.origin, ...settings }, secrets: { api_secret: SECRET } },
    { log: (line) => lines.push(line), limits },
  );
}

test("a request to another host is refused before any connection is made", async () => {
  for (const escape of [`${other.origin}/steal`, 'http://127.0.0.2:9/steal', `${provider.origin.replace('http:', 'https:')}/x`]) {
    const plugin = await hostile({ escape_url: escape });
    await assert.rejects(plugin.createRefund(request('escape')), (e) => {
      assert.ok(e instanceof RefundError && e.final, String(e));
      assert.match(e.answer.refused.message, /Denied\(.*is not this provider's origin/);
      return true;
    });
    await plugin.close();
  }
  assert.equal(other.connections(), 0);
  assert.equal(provider.connections(), 0);
});

test('credentials in the url and a missing base_url are refused too', async () => {
  const withCredentials = await hostile({ escape_url: provider.origin.replace('http://', 'http://user:pw@') + '/x' });
  await assert.rejects(withCredentials.createRefund(request('escape', 'creds')), /credentials in the url/);
  await withCredentials.close();
  const offline = await loadPlugin(pluginPath('hostile'), {}, { log: () => {} });
  await assert.rejects(offline.createRefund(request('escape', 'offline')), /granted no network access/);
  await offline.close();
  assert.equal(provider.connections(), 0);
});

test('the provider origin itself is reachable', async () => {
  const plugin = await hostile({ escape_url: `${provider.origin}/fine` });
  const refund = await plugin.createRefund(request('escape', 'own-origin'));
  assert.equal(refund.provider_refund_id, 'escaped');
  assert.equal(provider.connections(), 1);
  await plugin.close();
});

test('a secret the plugin logs is redacted', async () => {
  const plugin = await hostile();
  await plugin.createRefund(request('log-secret'));
  await plugin.close();
  const logged = lines.filter((l) => l.op === 'create-refund' && l.text.includes('the api secret is'));
  assert.equal(logged.length, 1, JSON.stringify(lines));
  assert.ok(!logged[0].text.includes(SECRET), logged[0].text);
  assert.match(logged[0].text, /the api secret is \[redacted\] api_secret=\[redacted\]/);
  assert.equal(logged[0].provider, 'hostile');
});

test('a plugin that spins is stopped at its deadline; the next operation runs, storage kept', async () => {
  const plugin = await hostile({}, { deadlineMs: 500 });
  assert.equal((await plugin.createRefund(request('storage', 's1'))).provider_refund_id, 'count-1');
  await assert.rejects(plugin.createRefund(request('spin')), (e) => {
    assert.ok(e instanceof PluginFailure, String(e));
    assert.equal(e.message, 'plugin hostile ran past its 500 ms deadline in create-refund');
    return true;
  });
  // A new thread, the same storage: each operation runs on a fresh instance anyway.
  assert.equal((await plugin.createRefund(request('storage', 's2'))).provider_refund_id, 'count-2');
  await plugin.close();
});

test('a panic is a plugin failure, logged, and the plugin keeps working', async () => {
  const plugin = await hostile();
  await assert.rejects(plugin.createRefund(request('panic')), (e) => {
    assert.ok(e instanceof PluginFailure, String(e));
    assert.match(e.message, /^plugin hostile trapped in create-refund: /);
    assert.deepEqual(e.answer, { error: e.message });
    return true;
  });
  assert.ok(lines.some((l) => l.level === 'error' && l.text.includes('panicked on purpose')), JSON.stringify(lines));
  assert.equal((await plugin.createRefund(request(undefined, 'after-panic'))).provider_refund_id, 'hostile-h-after-panic');
  await plugin.close();
});

test('a component whose describe() traps does not load', async () => {
  await assert.rejects(loadPlugin(pluginPath('hostile-trap-describe'), {}, { log: () => {} }), (e) => {
    assert.ok(e instanceof PluginFailure, String(e));
    assert.match(e.message, /trapped in describe/);
    return true;
  });
});

test('a plugin that hoards memory hits its cap; the next operation runs', async () => {
  const plugin = await hostile({}, { memoryLimitBytes: 8 << 20 });
  await assert.rejects(plugin.createRefund(request('hog')), (e) => {
    assert.ok(e instanceof PluginFailure, String(e));
    assert.equal(e.message, `plugin hostile hit its memory cap of ${8 << 20} bytes in create-refund`);
    return true;
  });
  assert.equal((await plugin.createRefund(request(undefined, 'after-hog'))).provider_refund_id, 'hostile-h-after-hog');
  await plugin.close();
});

test('a file that is not a plugin component, or no file, is a configuration error', async () => {
  const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const { ConfigError } = await import('../src/index.mjs');
  const dir = mkdtempSync(join(tmpdir(), 'refundry-node-bad-'));
  try {
    writeFileSync(join(dir, 'junk.wasm'), 'not wasm at all');
    await assert.rejects(loadPlugin(join(dir, 'junk.wasm'), {}), (e) => e instanceof ConfigError && /not a valid WebAssembly component/.test(e.message));
    await assert.rejects(loadPlugin(join(dir, 'missing.wasm'), {}), (e) => e instanceof ConfigError && /cannot read plugin/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  await assert.rejects(loadPlugin(pluginPath('hostile'), { settings: { base_url: 'ftp://x' } }), ConfigError);
});
