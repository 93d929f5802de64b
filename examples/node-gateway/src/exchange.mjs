// One checked request to the provider and its answer, on the gateway's thread: exactly the
// headers the plugin gave (node:http adds none but Host and Content-Length), no redirect followed
// (node:http never follows one), the whole exchange within a timeout, and the body within a size
// cap. Failures are the contract's `http-error` cases, told apart by whether the request can have
// reached the provider.

import http from 'node:http';
import https from 'node:https';

const agents = {
  'http:': new http.Agent({ keepAlive: true }),
  'https:': new https.Agent({ keepAlive: true }),
};

const err = (tag, val) => ({ tag: 'err', val: val === undefined ? { tag } : { tag, val } });

/**
 * Sends `req` (already checked by the policy; `url` is its parsed URL) once. Resolves to the
 * contract's `result<response, http-error>`: `{tag: 'ok', val: {status, headers, body}}` or
 * `{tag: 'err', val: {tag: 'timeout' | 'connect-failed' | 'transport' | 'response-too-large' |
 * 'invalid-request', val?}}`. Never rejects.
 */
export function exchange(req, url, { timeoutMs, maxResponseBytes }) {
  return new Promise((resolve) => {
    let settled = false;
    let connected = false;
    let timer;
    const finish = (result) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    const transport = url.protocol === 'https:' ? https : http;
    let request;
    try {
      request = transport.request(url, {
        method: req.method.toUpperCase(),
        agent: agents[url.protocol],
        headers: headerObject(req.headers),
      });
    } catch (e) {
      finish(err('invalid-request', e.message));
      return;
    }
    timer = setTimeout(() => {
      finish(err('timeout'));
      request.destroy();
    }, timeoutMs);
    // The request is written once the connection is up (after the TLS handshake for https): a
    // failure before that (DNS, refused, unreachable, handshake) sent nothing.
    const ready = url.protocol === 'https:' ? 'secureConnect' : 'connect';
    request.on('socket', (socket) => {
      // A socket from the pool is connected already.
      if (!socket.connecting) connected = true;
      else socket.once(ready, () => (connected = true));
    });
    request.on('error', (e) => finish(err(connected ? 'transport' : 'connect-failed', describe(e))));
    request.on('response', (response) => {
      const declared = Number(response.headers['content-length']);
      if (Number.isFinite(declared) && declared > maxResponseBytes) {
        finish(err('response-too-large', BigInt(maxResponseBytes)));
        response.destroy();
        return;
      }
      const chunks = [];
      let size = 0;
      response.on('data', (chunk) => {
        size += chunk.length;
        if (size > maxResponseBytes) {
          finish(err('response-too-large', BigInt(maxResponseBytes)));
          response.destroy();
          return;
        }
        chunks.push(chunk);
      });
      response.on('error', (e) => finish(err('transport', describe(e))));
      response.on('aborted', () => finish(err('transport', 'the provider closed the connection mid-answer')));
      response.on('end', () => {
        const headers = [];
        const raw = response.rawHeaders;
        for (let i = 0; i < raw.length; i += 2) headers.push([raw[i].toLowerCase(), raw[i + 1]]);
        finish({ tag: 'ok', val: { status: response.statusCode, headers, body: new Uint8Array(Buffer.concat(chunks)) } });
      });
    });
    if (req.body !== undefined && req.body !== null) request.end(Buffer.from(req.body));
    else request.end();
  });
}

/** Headers as node:http takes them: names as the plugin wrote them, a repeated name (in any
 * case) kept as a list, in order. */
function headerObject(pairs) {
  const out = {};
  const keys = new Map();
  for (const [name, value] of pairs) {
    const key = keys.get(name.toLowerCase());
    if (key === undefined) {
      keys.set(name.toLowerCase(), name);
      out[name] = value;
    } else {
      out[key] = [].concat(out[key], value);
    }
  }
  return out;
}

function describe(e) {
  return e.code ? `${e.message} (${e.code})` : e.message;
}
