// Refundry's provider plugins in a JavaScript gateway:
//
//   import { loadPlugin } from 'refundry-node-gateway';
//   const plugin = await loadPlugin('mfs-africa.wasm', { settings: { base_url }, secrets: { ... } });
//   const refund = await plugin.createRefund({ original_transaction_id, external_refund_id,
//                                              amount_minor, currency });
//
// The component (transpiled by jco, see transpiled.mjs) runs on a worker thread of its own, one
// operation at a time, each on a fresh instance; this thread supplies its HTTP, storage and log
// with the Rust runtime's policy (policy.mjs, exchange.mjs, storage.mjs, redact.mjs) and stops
// an operation that runs past its deadline. Answers are JSON in the Rust runtime's shape
// (wire.mjs); a refund error throws RefundError, a rejected webhook WebhookRejected, a plugin
// that failed PluginFailure, bad configuration or arguments ConfigError.

import { MessageChannel, Worker } from 'node:worker_threads';

import { resolveConfig } from './config.mjs';
import { ConfigError, PluginFailure, RefundError, WebhookRejected } from './errors.mjs';
import { exchange } from './exchange.mjs';
import { serveHostCalls } from './hostcall.mjs';
import { check, parseOrigin } from './policy.mjs';
import { Redactor, credentialHeaders, credentialsIn, namesACredential, MIN_TOKEN } from './redact.mjs';
import { DEFAULT_QUOTAS, MemoryStore, storageCall } from './storage.mjs';
import { transpiled } from './transpiled.mjs';
import * as wire from './wire.mjs';

export { ConfigError, PluginFailure, RefundError, WebhookRejected } from './errors.mjs';
export { MemoryStore, TooLarge } from './storage.mjs';
export { transpiled } from './transpiled.mjs';

/** The limits a plugin runs under: the Rust runtime's defaults. */
export const DEFAULT_LIMITS = Object.freeze({
  /** Wall time of one operation (instantiation and host calls included). */
  deadlineMs: 5000,
  /** Time allowed for one HTTP request, from connect to the last body byte. */
  timeoutMs: 10_000,
  /** Largest response body accepted, in bytes. */
  maxResponseBytes: 1 << 20,
  /** The most log lines one operation may write. */
  logMaxLines: 200,
  /** The most linear memory one plugin instance may have, in bytes. */
  memoryLimitBytes: 16 << 20,
});

/** How close to its cap a trapped instance's memory must be for the trap to be called the
 * cap's: an allocation that did not fit was at most this large (a plugin asks in 1 MiB steps at
 * most; larger requests are rare and then reported as a plain trap). */
const MEMORY_SLACK = 2 << 20;

const LEVEL_NAMES = { trace: 'Trace', debug: 'Debug', info: 'Info', warn: 'Warn', error: 'Error' };

/** The default log sink: the plugin's lines on stderr, already without secrets. */
export function stderrLog({ provider, op, level, text }) {
  process.stderr.write(`[${provider} ${op} ${LEVEL_NAMES[level] ?? level}] ${text}\n`);
}

/**
 * Loads the plugin component in `file` for one provider.
 *
 * - `providerConfig`: `{settings, secrets}`, objects of strings; `env:NAME` values are read from
 *   the environment now. `settings.base_url` is the only origin the plugin may reach (without
 *   it, no network at all).
 * - `options`: `{limits}` (see DEFAULT_LIMITS), `storage` (`get`/`set`/`delete`, may be async;
 *   default a MemoryStore with `quotas`, `{maxKeys, maxBytes}`, default DEFAULT_QUOTAS), `log` (a function of `{provider, op, level, text}`; default stderr),
 *   `env` (default `process.env`).
 *
 * Throws ConfigError for an unusable configuration or component, PluginFailure when the plugin
 * cannot describe itself.
 */
export async function loadPlugin(file, providerConfig = {}, options = {}) {
  const config = resolveConfig(providerConfig, options.env ?? process.env);
  const baseUrl = config.settings.get('base_url');
  const origin = baseUrl === undefined ? null : parseOrigin(baseUrl);
  const component = await transpiled(file);
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const store = options.storage ?? new MemoryStore({ ...DEFAULT_QUOTAS, ...options.quotas });
  const plugin = new Plugin(component, config, origin, limits, store, options.log ?? stderrLog, file);
  const { result, sanitizer } = await plugin.call('describe', []);
  plugin.info = wire.providerInfo(result.ok, sanitizer);
  plugin.provider = plugin.info.id;
  return plugin;
}

/** A loaded plugin. Its operations run one at a time; load it again for parallel work. */
export class Plugin {
  #thread;
  #redactor;
  #store;
  #log;
  /** Credentials the plugin keeps in its storage, by key (read or written so far). */
  #stored = new Map();
  /** Credentials issued in the running operation's HTTP answers. */
  #issued = [];
  #queue = Promise.resolve();

  constructor(component, config, origin, limits, store, log, file) {
    /** The provider id (the component's file name until it describes itself). */
    this.provider = String(file).split('/').pop().replace(/\.wasm$/, '');
    this.limits = limits;
    this.#redactor = new Redactor([...config.secrets.values()]);
    this.#store = store;
    this.#log = log;
    this.#thread = new PluginThread(
      { entry: component.entry, dir: component.dir, config, origin, limits },
      {
        http: (req) => this.#http(origin, req),
        storage: (call) => this.#storage(call),
      },
      (line) => this.#log({ provider: this.provider, op: line.op, level: line.level, text: this.#redactor.redact(line.text) }),
    );
  }

  /** What the plugin says it is (provider id, version, currencies, refund rules), as JSON. */
  async describe() {
    return structuredClone(this.info);
  }

  /** Asks the provider to refund: `{original_transaction_id, external_refund_id, amount_minor,
   * currency, reason?, order_id?}`. Resolves to the refund; throws RefundError. */
  async createRefund(request) {
    return this.#refund('create-refund', [wire.refundRequest(request)]);
  }

  /** Looks a refund up: `{external_refund_id}` or `{provider_refund_id}`, and the original
   * payment's id when known. */
  async getRefund(lookup, originalTransactionId) {
    const txn = originalTransactionId ?? undefined;
    if (txn !== undefined && typeof txn !== 'string') throw new ConfigError('originalTransactionId must be a string');
    return this.#refund('get-refund', [wire.refundLookup(lookup), txn]);
  }

  /** The provider's refunds created in `{from, to}` (ms, `to` excluded): one page,
   * `{refunds, next_cursor}`. */
  async listRefunds(range, cursor) {
    if (cursor !== undefined && cursor !== null && typeof cursor !== 'string') throw new ConfigError('cursor must be a string');
    const answer = await this.call('list-refunds', [wire.timeRange(range), cursor ?? undefined]);
    return this.#answer(answer, wire.page, wire.refundError, RefundError);
  }

  /** Verifies and parses a webhook delivery: `{events: [...]}` or `{ignored: "why"}`; throws
   * WebhookRejected for one that is not genuine. */
  async parseWebhook(delivery) {
    const answer = await this.call('parse-webhook', [wire.webhookRequest(delivery)]);
    return this.#answer(
      answer,
      (v, s) => (v.tag === 'events' ? { events: v.val.map((e) => wire.webhookEvent(e, s)) } : { ignored: s.message(v.val) }),
      wire.webhookError,
      WebhookRejected,
    );
  }

  /** Stops the plugin's thread. */
  async close() {
    await this.#thread.close();
  }

  async #refund(op, args) {
    return this.#answer(await this.call(op, args), wire.refund, wire.refundError, RefundError);
  }

  /** An operation's answer as JSON, cleaned: the refund (or page, or events), or the error. */
  #answer({ result, sanitizer }, ok, error, ErrorClass) {
    if ('ok' in result) return ok(result.ok, sanitizer);
    throw new ErrorClass(error(result.err, sanitizer));
  }

  /** Runs the contract operation `op` (`describe`, `create-refund`, ...) on the plugin's thread,
   * after the operations before it: `{result, sanitizer}`, the answer as contract values
   * (`{ok}`, or `{err}` for an operation that has an error type) and what makes it JSON. A
   * trap, the memory cap or the deadline is a PluginFailure. The methods above are the API. */
  async call(op, args) {
    const turn = this.#queue.then(async () => {
      this.#issued = [];
      const result = await this.#thread.run(op, args);
      const sanitizer = new wire.Sanitizer(
        this.#redactor.with([...this.#issued, ...[...this.#stored.values()].flat()]),
        this.provider,
        op,
      );
      if ('deadline' in result) {
        throw new PluginFailure(`plugin ${this.provider} ran past its ${result.deadline} ms deadline in ${op}`);
      }
      if ('trap' in result) {
        // A trap with the memory at its cap is the cap's doing: the allocator found no more room.
        const cap = this.limits.memoryLimitBytes;
        if (result.memoryBytes !== undefined && result.memoryBytes + MEMORY_SLACK >= cap) {
          throw new PluginFailure(`plugin ${this.provider} hit its memory cap of ${cap} bytes in ${op}`);
        }
        throw new PluginFailure(`plugin ${this.provider} trapped in ${op}: ${sanitizer.message(result.trap)}`);
      }
      return { result, sanitizer };
    });
    this.#queue = turn.catch(() => {});
    return turn;
  }

  async #http(origin, req) {
    const checked = check(origin, req);
    if (checked.tag === 'err') return checked;
    const result = await exchange(req, checked.val, this.limits);
    if (result.tag === 'ok') {
      this.#issued.push(...credentialsIn(result.val.body), ...credentialHeaders(result.val.headers));
    }
    return result;
  }

  async #storage(call) {
    const result = await storageCall(this.#store, call);
    if (result.tag === 'ok') {
      const value = call.op === 'get' ? result.val : call.op === 'set' ? call.value : undefined;
      this.#remember(call.key, value);
    }
    return result;
  }

  /** Notes the credentials in a stored value (as the Rust runtime's storage does), so that no
   * answer carries them. */
  #remember(key, value) {
    if (value === undefined) {
      this.#stored.delete(key);
      return;
    }
    const found = credentialsIn(value);
    const text = Buffer.from(value).toString('utf8');
    if (namesACredential(key) && text.length >= MIN_TOKEN) found.push(text);
    if (found.length > 0) this.#stored.set(key, found);
    else this.#stored.delete(key);
  }
}

/** How long a plugin's thread may take to load the component's code. */
const STARTUP_MS = 60_000;
/** The `seq` of a thread's start, which no operation has. */
const STARTING = 0;

/** The worker thread a plugin runs on, started on first use and again after a deadline. */
class PluginThread {
  #spec;
  #handlers;
  #onLog;
  #worker = null;
  /** The gateway's end of the worker's host calls. */
  #port = null;
  #seq = 0;
  #pending = null;

  constructor(spec, handlers, onLog) {
    this.#spec = spec;
    this.#handlers = handlers;
    this.#onLog = onLog;
  }

  /** Starts the thread and waits until it has loaded the component's code: `{ready}` or
   * `{trap}`. Loading and compiling are not part of any operation's deadline (nor are they in
   * the Rust runtime, which compiles when a plugin is loaded). */
  #start() {
    const { port1, port2 } = new MessageChannel();
    const counter = new SharedArrayBuffer(4);
    serveHostCalls(port2, counter, this.#handlers);
    const worker = new Worker(new URL('./worker.mjs', import.meta.url), {
      workerData: { ...this.#spec, callPort: port1, counter },
      transferList: [port1],
    });
    worker.on('message', (msg) => {
      if (msg.type === 'log') this.#onLog(msg);
      else if (msg.type === 'ready' && this.#pending?.seq === STARTING) this.#settle({ ready: true });
      else if (msg.type === 'done' && this.#pending?.seq === msg.seq) this.#settle(msg.result);
    });
    // A thread stopped at a deadline is no longer this.#worker: its end concerns no operation.
    worker.on('error', (e) => {
      if (this.#worker === worker) this.#settle({ trap: `the plugin's thread failed: ${e.message}` });
    });
    worker.on('exit', () => {
      if (this.#worker !== worker) return;
      this.#worker = null;
      this.#settle({ trap: "the plugin's thread exited" });
    });
    // An idle plugin does not keep the process alive; a running operation's deadline timer does.
    worker.unref();
    this.#worker = worker;
    this.#port = port2;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#settle({ trap: `the plugin's thread did not start within ${STARTUP_MS} ms` });
        this.#stop();
      }, STARTUP_MS);
      this.#pending = { seq: STARTING, resolve, timer };
    });
  }

  #settle(result) {
    const pending = this.#pending;
    if (pending === null) return;
    this.#pending = null;
    clearTimeout(pending.timer);
    pending.resolve(result);
  }

  /** Runs one operation: `{ok}`, `{err}`, `{trap}` or `{deadline}`. */
  async run(op, args) {
    if (this.#worker === null) {
      const started = await this.#start();
      if (!started.ready) return started;
    }
    return new Promise((resolve) => {
      const seq = ++this.#seq;
      const deadline = this.#spec.limits.deadlineMs;
      const timer = setTimeout(() => {
        // A plugin that spins, or waits past its deadline: its thread is stopped, and the next
        // operation gets a new one.
        this.#settle({ deadline });
        this.#stop();
      }, deadline);
      this.#pending = { seq, resolve, timer };
      this.#worker.postMessage({ seq, op, args });
    });
  }

  #stop() {
    const worker = this.#worker;
    this.#worker = null;
    this.#port?.close();
    this.#port = null;
    return worker?.terminate();
  }

  async close() {
    await this.#stop();
  }
}
