// The contract's imports are synchronous (`http.send` returns the answer), but a gateway's HTTP
// and storage are asynchronous. The plugin therefore runs on a worker thread, and each such
// import is a call to the gateway's thread that the worker waits for with `Atomics.wait`: the
// worker sleeps in the kernel (no busy loop) until the gateway's thread answers, and never
// longer than the call's bound (so never forever). The gateway's thread keeps running its event
// loop meanwhile. The answer travels as a message that the worker reads synchronously with
// `receiveMessageOnPort`; a shared counter, bumped after each answer is posted, is what it waits
// on. This is the scheme of the WASI shims and of synckit for Node.

import { receiveMessageOnPort } from 'node:worker_threads';

/** The worker's end: `call` blocks until the answer or `waitMs`. */
export class HostCaller {
  constructor(port, counter) {
    this.port = port;
    this.counter = new Int32Array(counter);
    this.seq = 0;
  }

  /** The gateway thread's answer to `{kind, payload}`, or `undefined` after `waitMs`. */
  call(kind, payload, waitMs) {
    const id = ++this.seq;
    this.port.postMessage({ id, kind, payload });
    const until = Date.now() + waitMs;
    for (;;) {
      const seen = Atomics.load(this.counter, 0);
      for (let m = receiveMessageOnPort(this.port); m !== undefined; m = receiveMessageOnPort(this.port)) {
        // An answer to an earlier call that was given up on is dropped.
        if (m.message.id === id) return m.message.result;
      }
      const left = until - Date.now();
      if (left <= 0) return undefined;
      // Sleeps only while no answer was posted since `seen` was read.
      Atomics.wait(this.counter, 0, seen, left);
    }
  }
}

/** The gateway thread's end: answers each call with `handlers[kind](payload)` (may be async). */
export function serveHostCalls(port, counter, handlers) {
  const bumps = new Int32Array(counter);
  port.on('message', async ({ id, kind, payload }) => {
    let result;
    try {
      result = await handlers[kind](payload);
    } catch (e) {
      result = { failed: String(e?.message ?? e) };
    }
    port.postMessage({ id, result });
    Atomics.add(bumps, 0, 1);
    Atomics.notify(bumps, 0);
  });
  // The worker's activity, not this port, decides whether the process stays alive.
  port.unref();
}
