// The memory cap. V8 has no hook on a module's memory growth, but a core module's memory may
// declare its own maximum, which `memory.grow` then cannot pass: the plugin's allocator fails
// and the instance traps, as in the Rust runtime (16 MiB by default). The maximum is written into
// the module's memory section before it is compiled; nothing else of the module changes.

import { PluginFailure } from './errors.mjs';

const PAGE = 64 * 1024;
const MEMORY_SECTION = 5;

function readLeb(bytes, at) {
  let value = 0;
  let shift = 0;
  let pos = at;
  for (;;) {
    const byte = bytes[pos++];
    if (byte === undefined) throw new PluginFailure('truncated wasm module');
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if ((byte & 0x80) === 0) return [value, pos - at];
  }
}

function leb(value) {
  const out = [];
  let v = value;
  do {
    let byte = v % 128;
    v = Math.floor(v / 128);
    if (v > 0) byte |= 0x80;
    out.push(byte);
  } while (v > 0);
  return Uint8Array.from(out);
}

/** The memory section `payload` with each 32-bit memory's maximum at most `maxPages`. */
function capSection(payload, maxPages, name) {
  const [count, n] = readLeb(payload, 0);
  const out = [leb(count)];
  let pos = n;
  for (let i = 0; i < count; i++) {
    const flags = payload[pos++];
    if (flags & 0x04) throw new PluginFailure(`${name}: a 64-bit memory, which this gateway does not run`);
    const [min, a] = readLeb(payload, pos);
    pos += a;
    let max = Infinity;
    if (flags & 0x01) {
      const [declared, b] = readLeb(payload, pos);
      pos += b;
      max = declared;
    }
    const capped = Math.min(max, maxPages);
    if (min > capped) {
      throw new PluginFailure(`${name} needs ${min * PAGE} bytes of memory at start, over the cap of ${maxPages * PAGE}`);
    }
    out.push(Uint8Array.of(flags | 0x01), leb(min), leb(capped));
  }
  return Buffer.concat([...out, payload.subarray(pos)]);
}

/** The module `bytes` with its memories capped at `limitBytes` (whole pages). */
export function capMemory(bytes, limitBytes, name = 'module') {
  const maxPages = Math.floor(limitBytes / PAGE);
  const parts = [bytes.subarray(0, 8)];
  let pos = 8;
  while (pos < bytes.length) {
    const id = bytes[pos];
    const [size, n] = readLeb(bytes, pos + 1);
    const start = pos + 1 + n;
    const end = start + size;
    if (id === MEMORY_SECTION) {
      const payload = capSection(bytes.subarray(start, end), maxPages, name);
      parts.push(Uint8Array.of(MEMORY_SECTION), leb(payload.length), payload);
    } else {
      parts.push(bytes.subarray(pos, end));
    }
    pos = end;
  }
  return Buffer.concat(parts);
}
