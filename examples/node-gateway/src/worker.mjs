// The plugin's thread. Each operation runs on a fresh instance of the component (as the contract
// says the host calls them), with the imports below; `http` and `storage` are calls to the
// gateway's thread (see hostcall.mjs), the others are answered here.

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';

import { HostCaller } from './hostcall.mjs';
import { capMemory } from './memory.mjs';
import { check } from './policy.mjs';
import { MAX_KEY, MAX_VALUE } from './storage.mjs';

// jco's output asks for `WebAssembly.promising` (JS promise integration, not in Node 20) and
// falls back to the plain function when calling it throws. A "not a function" error makes V8
// re-parse the whole (large) generated function to name the callee: about 1 ms per throw, five
// throws per instance. The fallback itself, installed up front on this thread's own global,
// gives the same functions without the throws.
if (typeof WebAssembly.promising !== 'function') WebAssembly.promising = (f) => f;

const { entry, dir, config, origin, limits, callPort, counter } = workerData;
const caller = new HostCaller(callPort, counter);
const { instantiate } = await import(pathToFileURL(entry).href);

/** The linear memories of the running instance, to say how full they were when it trapped. */
let memories = [];

/** The core modules are compiled already: instantiating them synchronously spares a trip
 * through the event loop per module. */
function instantiateCore(module, imports) {
  const instance = new WebAssembly.Instance(module, imports);
  for (const value of Object.values(instance.exports)) {
    if (value instanceof WebAssembly.Memory) memories.push(value);
  }
  return instance;
}

const modules = new Map();
/** The component's core modules, their memories capped, compiled once for every instance. */
function getCoreModule(name) {
  if (!modules.has(name)) {
    const bytes = capMemory(readFileSync(join(dir, name)), limits.memoryLimitBytes, name);
    modules.set(name, new WebAssembly.Module(bytes));
  }
  return modules.get(name);
}

/** How long a call to the gateway's thread may take before the worker stops waiting: the HTTP
 * timeout (which the gateway's thread applies itself) and a second for the round trip. */
const HOST_CALL_BOUND_MS = limits.timeoutMs + 1000;

/** Longest log message or field kept, in bytes. */
const MAX_LOG_TEXT = 4096;

/** The operation running now: its name and log line count. */
let current = { op: 'load', lines: 0 };

function cut(text) {
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= MAX_LOG_TEXT) return text;
  return buf.subarray(0, MAX_LOG_TEXT).toString('utf8').replace(/\uFFFD$/, '');
}

/** Asks the gateway's thread; a gateway failure traps the instance (it is not the provider's
 * answer). */
function hostCall(kind, payload, onNoAnswer) {
  const result = caller.call(kind, payload, HOST_CALL_BOUND_MS);
  if (result === undefined) return onNoAnswer;
  if (result.failed !== undefined) throw new Error(`the gateway's ${kind} failed: ${result.failed}`);
  return result;
}

const tooLarge = (allowed) => ({ tag: 'err', val: { tag: 'too-large', val: allowed } });
const noAnswer = { tag: 'err', val: { tag: 'unavailable', val: `the gateway's store did not answer within ${HOST_CALL_BOUND_MS} ms` } };
const keyTooLong = (key) => Buffer.byteLength(key) > MAX_KEY;

const imports = {
  'refundry:provider/clock': { now: () => BigInt(Date.now()) },
  'refundry:provider/config': {
    // Settings first, then secrets, as the Rust runtime's `Settings`.
    get: (key) => config.settings.get(key) ?? config.secrets.get(key),
  },
  'refundry:provider/crypto': {
    sha256: (data) => new Uint8Array(createHash('sha256').update(data).digest()),
    hmacSha256: (key, data) => new Uint8Array(createHmac('sha256', key).update(data).digest()),
    hmacSha256Verify: (key, data, mac) => {
      const expected = createHmac('sha256', key).update(data).digest();
      // The length is no secret; the bytes are compared in constant time.
      return mac.length === expected.length && timingSafeEqual(expected, mac);
    },
  },
  'refundry:provider/log': {
    log: (level, message, fields) => {
      current.lines += 1;
      if (current.lines > limits.logMaxLines) return;
      let text = cut(message);
      for (const [k, v] of fields) text += ` ${cut(k)}=${cut(v)}`;
      // Redacted on the gateway's thread, where the line is written.
      parentPort.postMessage({ type: 'log', op: current.op, level, text });
    },
  },
  'refundry:provider/storage': {
    get: (key) => (keyTooLong(key) ? tooLarge(MAX_KEY) : hostCall('storage', { op: 'get', key }, noAnswer)),
    set: (key, value) => {
      if (keyTooLong(key)) return tooLarge(MAX_KEY);
      if (value.length > MAX_VALUE) return tooLarge(MAX_VALUE);
      return hostCall('storage', { op: 'set', key, value }, noAnswer);
    },
    delete: (key) => (keyTooLong(key) ? tooLarge(MAX_KEY) : hostCall('storage', { op: 'delete', key }, noAnswer)),
  },
  'refundry:provider/http': {
    send: (req) => {
      // Refused here, before anything leaves this thread; the gateway's thread checks again.
      const checked = check(origin, req);
      if (checked.tag === 'err') return checked;
      return hostCall('http', req, { tag: 'err', val: { tag: 'timeout' } });
    },
  },
};

const EXPORTS = {
  describe: 'describe',
  'create-refund': 'createRefund',
  'get-refund': 'getRefund',
  'list-refunds': 'listRefunds',
  'parse-webhook': 'parseWebhook',
};

/** Runs `op` on a fresh instance: `{ok}`, `{err}` (the contract's error), or `{trap}`. */
async function run(op, args) {
  current = { op, lines: 0 };
  memories = [];
  try {
    const instance = await instantiate(getCoreModule, imports, instantiateCore);
    try {
      return { ok: instance.provider[EXPORTS[op]](...args) };
    } catch (e) {
      if (e !== null && typeof e === 'object' && Object.hasOwn(e, 'payload')) return { err: e.payload };
      throw e;
    }
  } catch (e) {
    const used = memories.reduce((n, m) => n + m.buffer.byteLength, 0);
    return { trap: String(e?.message ?? e), memoryBytes: used };
  } finally {
    const dropped = current.lines - limits.logMaxLines;
    if (dropped > 0) {
      const text = `${dropped} more plugin log lines dropped: at most ${limits.logMaxLines} per operation`;
      parentPort.postMessage({ type: 'log', op, level: 'warn', text });
    }
  }
}

// Every core module compiled before the first operation, whose deadline it is not part of.
for (const name of readdirSync(dir).filter((n) => n.endsWith('.wasm'))) getCoreModule(name);
parentPort.postMessage({ type: 'ready' });

parentPort.on('message', async ({ seq, op, args }) => {
  parentPort.postMessage({ type: 'done', seq, result: await run(op, args) });
});
