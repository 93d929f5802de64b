// One request to the provider on loopback servers: the plugin's headers exactly, no redirect
// followed, the timeout, the size cap, and the error cases told apart.

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';

import { exchange } from '../src/exchange.mjs';

const LIMITS = { timeoutMs: 5000, maxResponseBytes: 1024 };

/** A one-connection raw TCP server: `answer(request text)` gives the bytes to write back (or
 * nothing, to stay silent). `{url, request()}`: `request()` is what the client sent. */
async function rawServer(answer) {
  let seen = '';
  let resolveSeen;
  const done = new Promise((r) => (resolveSeen = r));
  const server = createServer((socket) => {
    socket.on('data', (d) => {
      seen += d.toString('latin1');
      if (!seen.includes('\r\n\r\n')) return;
      resolveSeen(seen);
      const out = answer(seen);
      if (out !== undefined) socket.end(out);
    });
    socket.on('error', () => {});
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  server.unref();
  return { url: new URL(`http://127.0.0.1:${server.address().port}/v1/refunds?x=1`), request: () => done, close: () => server.close() };
}

const request = (url, headers = [], body) => ({ method: 'post', url: url.href, headers, body });

test('sends exactly the plugin headers and body, and returns the answer', async () => {
  const server = await rawServer(() => 'HTTP/1.1 201 Created\r\nX-Trace: t1\r\nContent-Length: 2\r\n\r\n{}');
  const body = new Uint8Array(Buffer.from('{"a":1}'));
  const answer = await exchange(request(server.url, [['X-Signature', 'abc'], ['Content-Type', 'application/json']], body), server.url, LIMITS);
  assert.equal(answer.tag, 'ok', JSON.stringify(answer));
  assert.equal(answer.val.status, 201);
  assert.deepEqual(answer.val.headers.find(([k]) => k === 'x-trace'), ['x-trace', 't1']);
  assert.equal(Buffer.from(answer.val.body).toString(), '{}');
  const sent = await server.request();
  assert.match(sent, /^POST \/v1\/refunds\?x=1 HTTP\/1\.1\r\n/);
  assert.match(sent, /\r\nX-Signature: abc\r\n/);
  assert.match(sent, /\r\nContent-Length: 7\r\n/);
  assert.ok(sent.endsWith('\r\n\r\n{"a":1}'), sent);
  const names = sent.split('\r\n\r\n')[0].split('\r\n').slice(1).map((l) => l.split(':')[0].toLowerCase()).sort();
  assert.deepEqual(names, ['connection', 'content-length', 'content-type', 'host', 'x-signature']);
  server.close();
});

test('a redirect is returned, not followed', async () => {
  const server = await rawServer(() => 'HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:9/steal\r\nContent-Length: 0\r\n\r\n');
  const answer = await exchange(request(server.url), server.url, LIMITS);
  assert.equal(answer.val.status, 302);
  server.close();
});

test('an answer over the cap is refused, declared or streamed', async () => {
  const big = 'x'.repeat(2048);
  const declared = await rawServer(() => `HTTP/1.1 200 OK\r\nContent-Length: ${big.length}\r\n\r\n${big}`);
  assert.deepEqual(await exchange(request(declared.url), declared.url, LIMITS), { tag: 'err', val: { tag: 'response-too-large', val: 1024n } });
  const chunked = await rawServer(() => `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n${big}\r\n0\r\n\r\n`);
  assert.deepEqual(await exchange(request(chunked.url), chunked.url, LIMITS), { tag: 'err', val: { tag: 'response-too-large', val: 1024n } });
  declared.close();
  chunked.close();
});

test('a slow provider times out', async () => {
  const server = await rawServer(() => undefined);
  const answer = await exchange(request(server.url), server.url, { ...LIMITS, timeoutMs: 200 });
  assert.deepEqual(answer, { tag: 'err', val: { tag: 'timeout' } });
  server.close();
});

test('nobody listening is a connect failure; a reset after sending is a transport error', async () => {
  const closed = await rawServer(() => undefined);
  closed.close();
  await new Promise((r) => setTimeout(r, 50));
  const refused = await exchange(request(closed.url), closed.url, LIMITS);
  assert.equal(refused.val.tag, 'connect-failed', JSON.stringify(refused));
  assert.match(refused.val.val, /ECONNREFUSED/);

  const reset = await rawServer(() => 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{"pa');
  const cut = await exchange(request(reset.url), reset.url, LIMITS);
  assert.equal(cut.val.tag, 'transport', JSON.stringify(cut));
  reset.close();
});

test('a request node:http refuses to build is invalid, answered and not thrown', async () => {
  // The policy refuses such a header first; the exchange still answers in the contract's terms.
  const url = new URL('http://127.0.0.1:9/');
  const answer = await exchange(request(url, [['bad name', 'x']]), url, LIMITS);
  assert.equal(answer.val.tag, 'invalid-request', JSON.stringify(answer));
});
