// The `storage` capability: one provider's small key-value namespace (a cached auth token, say).
// A gateway passes its own store (`options.storage` of loadPlugin: `get`, `set`, `delete`, each
// may return a promise); MemoryStore is a ready one that forgets when the process ends. Whatever
// the store, keys over MAX_KEY and values over MAX_VALUE bytes are refused before it is asked, as
// the Rust runtime does (`runtime/src/caps/storage.rs`).

/** Longest key accepted, in bytes. */
export const MAX_KEY = 256;
/** Largest value accepted, in bytes. */
export const MAX_VALUE = 64 * 1024;

/** A store's refusal of a write past its quota: `allowed` is the bytes the value could still
 * have had (0 when no other key fits). The plugin gets `too-large(allowed)`. */
export class TooLarge extends Error {
  constructor(allowed) {
    super(`over the storage quota: ${allowed} bytes allowed`);
    this.name = 'TooLarge';
    this.allowed = allowed;
  }
}

/** The namespace's quotas (the Rust runtime's defaults). */
export const DEFAULT_QUOTAS = { maxKeys: 1000, maxBytes: 1 << 20 };

/** A namespace in memory, within its quotas. */
export class MemoryStore {
  constructor(quotas = DEFAULT_QUOTAS) {
    this.quotas = quotas;
    this.values = new Map();
  }

  get(key) {
    return this.values.get(key);
  }

  set(key, value) {
    let keys = 0;
    let bytes = 0;
    for (const [k, v] of this.values) {
      if (k === key) continue;
      keys += 1;
      bytes += Buffer.byteLength(k) + v.length;
    }
    if (keys + 1 > this.quotas.maxKeys) throw new TooLarge(0);
    const room = Math.max(0, this.quotas.maxBytes - bytes - Buffer.byteLength(key));
    if (value.length > room) throw new TooLarge(Math.min(room, 2 ** 32 - 1));
    this.values.set(key, Uint8Array.from(value));
  }

  delete(key) {
    this.values.delete(key);
  }
}

/** The contract's `result<T, storage-error>` of one store call. */
export async function storageCall(store, { op, key, value }) {
  try {
    if (op === 'get') {
      const found = await store.get(key);
      return { tag: 'ok', val: found === undefined || found === null ? undefined : new Uint8Array(found) };
    }
    if (op === 'set') await store.set(key, value);
    else await store.delete(key);
    return { tag: 'ok', val: undefined };
  } catch (e) {
    if (e instanceof TooLarge) return { tag: 'err', val: { tag: 'too-large', val: e.allowed } };
    return { tag: 'err', val: { tag: 'unavailable', val: String(e?.message ?? e) } };
  }
}
