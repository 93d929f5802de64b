// What the tests share: the workspace's built components and `refundry` binary, sandboxes started
// as child processes on ports chosen at run time, and a receiver for the webhooks they send.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const workspace = join(dirname(fileURLToPath(import.meta.url)), '../../..');

/** The folder of the built components (`cargo xtask build-plugins`). */
export const PLUGINS = process.env.REFUNDRY_PLUGINS_DIR ?? join(workspace, 'target/plugins');

/** The built component `name` (`mfs-africa`, `hostile`, ...). */
export function pluginPath(name) {
  const path = join(PLUGINS, `${name}.wasm`);
  if (!existsSync(path)) throw new Error(`${path} is missing: run \`cargo xtask build-plugins\``);
  return path;
}

/** The `refundry` binary, whose `sandbox` command simulates the providers. */
export const REFUNDRY = process.env.REFUNDRY_BIN ?? join(workspace, 'target/debug/refundry');

export const randomHex = (n) => randomBytes(n).toString('hex');

/** Credentials of a new sandbox, as environment variables and as the provider's config. */
export const PROVIDERS = {
  'mfs-africa': () => {
    const env = {
      MFS_AFRICA_API_KEY: `node-${randomHex(4)}`,
      MFS_AFRICA_API_SECRET: randomHex(32),
      MFS_AFRICA_WEBHOOK_SECRET: randomHex(32),
    };
    const secrets = { api_key: env.MFS_AFRICA_API_KEY, api_secret: env.MFS_AFRICA_API_SECRET, webhook_secret: env.MFS_AFRICA_WEBHOOK_SECRET };
    return { env, settings: {}, secrets };
  },
  pagoefectivo: () => {
    const env = {
      PAGOEFECTIVO_ID_SERVICE: String(1000 + (randomBytes(2).readUInt16BE() % 9000)),
      PAGOEFECTIVO_ACCESS_KEY: `AK-${randomHex(4)}`,
      PAGOEFECTIVO_SECRET_KEY: randomHex(32),
    };
    return {
      env,
      settings: { id_service: env.PAGOEFECTIVO_ID_SERVICE },
      secrets: { access_key: env.PAGOEFECTIVO_ACCESS_KEY, secret_key: env.PAGOEFECTIVO_SECRET_KEY },
    };
  },
};

/**
 * Starts `refundry sandbox <provider> --port 0` (sending its webhooks to `callbackUrl`, if any)
 * and waits for the URL it prints. `{baseUrl, config, env, stop}`: `config` is the provider's
 * `{settings, secrets}` for loadPlugin.
 */
export async function startSandbox(provider, callbackUrl) {
  const { env, settings, secrets } = PROVIDERS[provider]();
  const args = ['sandbox', provider, '--port', '0'];
  if (callbackUrl) args.push('--callback-url', callbackUrl);
  const child = spawn(REFUNDRY, args, { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const baseUrl = await new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error(`the ${provider} sandbox printed no URL within 60 s`)), 60_000);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the ${provider} sandbox exited (${code}) before printing its URL`)));
    lines.once('line', (line) => {
      clearTimeout(timer);
      const url = line.split(/\s+/).find((w) => w.startsWith('http://'));
      if (url) resolve(url.replace(/\/$/, ''));
      else reject(new Error(`the ${provider} sandbox printed ${JSON.stringify(line)}`));
      // Keep draining, so a chatty sandbox never blocks on a full pipe.
      lines.on('line', () => {});
    });
  });
  return {
    baseUrl,
    env,
    config: { settings: { base_url: baseUrl, ...settings }, secrets },
    stop: () => child.kill(),
  };
}

/** POSTs `body` to the sandbox's control endpoint `path` (under `/_sandbox/`). */
export async function control(baseUrl, path, body) {
  const response = await fetch(`${baseUrl}/_sandbox/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => null);
  if (!response.ok) throw new Error(`sandbox ${path} answered ${response.status}: ${JSON.stringify(answer)}`);
  return answer;
}

/** GETs the sandbox's control endpoint `path`. */
export async function inspect(baseUrl, path) {
  const response = await fetch(`${baseUrl}/_sandbox/${path}`);
  return response.json();
}

/** Seeds a settled (paid) original payment at the sandbox. */
export function seed(provider, baseUrl, id, amount, currency) {
  return provider === 'mfs-africa'
    ? control(baseUrl, 'transactions', { transaction_id: id, amount, currency, settled: true })
    : control(baseUrl, 'payments', { transaction_id: id, amount, currency, paid: true });
}

/** A loopback receiver of webhooks: `{url, next(ms), close}`; `next` resolves to the next
 * delivery's `{headers, body}` (headers as received, body as bytes). */
export async function webhookReceiver() {
  const received = [];
  const waiting = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const headers = {};
      for (let i = 0; i < req.rawHeaders.length; i += 2) headers[req.rawHeaders[i].toLowerCase()] = req.rawHeaders[i + 1];
      res.end();
      const delivery = { headers, body: Buffer.concat(chunks) };
      const waiter = waiting.shift();
      if (waiter) waiter(delivery);
      else received.push(delivery);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/webhooks`,
    next: (ms = 15_000) =>
      received.length > 0
        ? Promise.resolve(received.shift())
        : new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`no webhook within ${ms} ms`)), ms);
            waiting.push((d) => {
              clearTimeout(timer);
              resolve(d);
            });
          }),
    close: () => server.close(),
  };
}

/** A loopback listener that counts the connections made to it: `{origin, connections(), close}`. */
export async function countingListener() {
  let connections = 0;
  const server = createServer((req, res) => res.end('{}'));
  server.on('connection', () => (connections += 1));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    connections: () => connections,
    close: () => server.close(),
  };
}
