// Both providers through loadPlugin against their sandboxes: a refund made, replayed and looked
// up; a real webhook verified and a forged one refused.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { RefundError, WebhookRejected, loadPlugin } from '../src/index.mjs';
import { pluginPath, randomHex, seed, startSandbox, control, webhookReceiver, inspect } from './support.mjs';

const STORIES = {
  'mfs-africa': { currency: 'KES', processed: 'processed', extra: {} },
  pagoefectivo: { currency: 'PEN', processed: 'completed', extra: { order_id: 'ORDER-77' } },
};

for (const [provider, story] of Object.entries(STORIES)) {
  describe(provider, () => {
    let sandbox;
    let receiver;
    let plugin;
    const lines = [];

    before(async () => {
      receiver = await webhookReceiver();
      sandbox = await startSandbox(provider, `${receiver.url}/${provider}`);
      plugin = await loadPlugin(pluginPath(provider), sandbox.config, { log: (line) => lines.push(line) });
    });
    after(async () => {
      await plugin?.close();
      sandbox?.stop();
      receiver?.close();
    });

    test('describes itself as the provider', async () => {
      const info = await plugin.describe();
      assert.equal(info.id, provider);
      assert.ok(info.currencies.includes(story.currency), JSON.stringify(info));
    });

    test('makes, replays and looks up a refund; refuses one over the payment', async () => {
      const txn = `${Date.now() % 1e9}${randomHex(2)}`.replace(/[a-f]/g, '1');
      await seed(provider, sandbox.baseUrl, txn, '500.00', story.currency);
      const request = {
        original_transaction_id: txn,
        external_refund_id: `node-${randomHex(4)}`,
        amount_minor: 15000,
        currency: story.currency,
        reason: 'customer_return',
        ...story.extra,
      };
      const refund = await plugin.createRefund(request);
      assert.equal(refund.status, 'pending');
      assert.equal(refund.amount_minor, 15000);
      assert.equal(refund.currency, story.currency);
      assert.equal(refund.original_transaction_id, txn);
      assert.ok(refund.provider_refund_id.length > 0);

      // The same request again is the same refund at the provider, not a second one.
      const again = await plugin.createRefund(request);
      assert.equal(again.provider_refund_id, refund.provider_refund_id);
      const found = await plugin.getRefund({ external_refund_id: request.external_refund_id }, txn);
      assert.equal(found.provider_refund_id, refund.provider_refund_id);
      const byId = await plugin.getRefund({ provider_refund_id: refund.provider_refund_id }, txn);
      assert.equal(byId.provider_refund_id, refund.provider_refund_id);
      const stats = await inspect(sandbox.baseUrl, 'stats');
      assert.equal(stats.refunds_created, 1, JSON.stringify(stats));
      if (provider === 'pagoefectivo') {
        // The token the plugin keeps in its storage serves every operation: one authorization.
        assert.equal(stats.authorizations, 1, JSON.stringify(stats));
      }

      // More than remains of the payment: a final refusal.
      await assert.rejects(
        plugin.createRefund({ ...request, external_refund_id: `node-${randomHex(4)}`, amount_minor: 50000 }),
        (e) => e instanceof RefundError && e.final && e.answer.refused.kind === 'amount-exceeded',
      );

      // The provider's webhook for the refund verifies; the same delivery altered does not.
      await control(sandbox.baseUrl, `refunds/${refund.provider_refund_id}/status`, { status: story.processed });
      let delivery;
      do delivery = await receiver.next();
      while (!delivery.body.toString().includes(refund.provider_refund_id));
      const outcome = await plugin.parseWebhook({ method: 'POST', path: `/webhooks/${provider}`, headers: delivery.headers, body: delivery.body });
      assert.equal(outcome.events.length, 1, JSON.stringify(outcome));
      assert.equal(outcome.events[0].refund.provider_refund_id, refund.provider_refund_id);
      assert.equal(outcome.events[0].refund.status, 'processed');

      const forged = Buffer.concat([delivery.body, Buffer.from(' ')]);
      await assert.rejects(
        plugin.parseWebhook({ headers: delivery.headers, body: forged }),
        (e) => e instanceof WebhookRejected && e.answer.rejected.reason === 'invalid_signature',
      );
      const unsigned = Object.fromEntries(Object.entries(delivery.headers).filter(([k]) => !/signature/i.test(k)));
      await assert.rejects(plugin.parseWebhook({ headers: unsigned, body: delivery.body }), WebhookRejected);
    });

    test('lists the refunds of a range', async () => {
      const now = Date.now();
      try {
        const page = await plugin.listRefunds({ from: now - 3_600_000, to: now + 3_600_000 });
        assert.ok(Array.isArray(page.refunds));
        assert.ok(page.refunds.every((r) => typeof r.provider_refund_id === 'string'));
      } catch (e) {
        // A provider that cannot list says so, as the contract asks.
        assert.ok(e instanceof RefundError && e.answer.refused?.kind === 'unsupported', String(e));
      }
    });

    test('no secret reaches the log', () => {
      const all = lines.map((l) => l.text).join('\n');
      for (const secret of Object.values(sandbox.config.secrets)) assert.ok(!all.includes(secret), all);
    });
  });
}

test('a component built for contract 0.1.0 still makes, replays and finds refunds', async () => {
  const sandbox = await startSandbox('mfs-africa');
  try {
    const plugin = await loadPlugin(new URL('../../../tests/fixtures/contract-v0.1.0/mfs-africa.wasm', import.meta.url).pathname, sandbox.config, { log: () => {} });
    await seed('mfs-africa', sandbox.baseUrl, 'txn_old', '100.00', 'KES');
    const request = { original_transaction_id: 'txn_old', external_refund_id: 'old-1', amount_minor: 2500, currency: 'KES' };
    const refund = await plugin.createRefund(request);
    assert.equal((await plugin.createRefund(request)).provider_refund_id, refund.provider_refund_id);
    assert.equal((await plugin.getRefund({ external_refund_id: 'old-1' })).provider_refund_id, refund.provider_refund_id);
    assert.equal((await inspect(sandbox.baseUrl, 'stats')).refunds_created, 1);
    await plugin.close();
  } finally {
    sandbox.stop();
  }
});
