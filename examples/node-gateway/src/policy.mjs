// The `http` capability's policy, as the Rust runtime applies it (`runtime/src/caps/http.rs`):
// deny by default. Only the scheme, host and port of the provider's `base_url`; no credentials in
// the URL; no header that would let a plugin steer the connection. Checked before anything is
// sent, so a refused request never opens a connection.

import { validateHeaderName, validateHeaderValue } from 'node:http';

import { ConfigError } from './errors.mjs';

/** Headers the host sets itself or that control the connection (RFC 9110 §7.6.1). */
export const FORBIDDEN_HEADERS = new Set([
  'host',
  'content-length',
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

const DEFAULT_PORTS = { 'http:': '80', 'https:': '443' };

/** `scheme://host:port` of a URL, default ports made explicit. */
export function originOf(url) {
  const port = url.port || DEFAULT_PORTS[url.protocol] || '0';
  return `${url.protocol}//${url.hostname}:${port}`;
}

/** The origin a provider may reach, from its `base_url` setting. */
export function parseOrigin(baseUrl) {
  let url;
  try {
    url = new URL(baseUrl);
  } catch (e) {
    throw new ConfigError(`base_url ${JSON.stringify(baseUrl)}: ${e.message}`);
  }
  if (!(url.protocol in DEFAULT_PORTS)) {
    throw new ConfigError(`base_url ${JSON.stringify(baseUrl)}: only http and https are supported`);
  }
  return originOf(url);
}

/** The contract's `http-error` variant. */
const err = (tag, val) => ({ tag: 'err', val: val === undefined ? { tag } : { tag, val } });

/**
 * Checks a plugin's request (`{method, url, headers, body}`, as jco hands it over) against the
 * policy. `{tag: 'ok', val: URL}` when it may be sent, else the `http-error` to answer with:
 * `denied` (other origin, credentials in the URL, a forbidden header, no network granted) or
 * `invalid-request` (a malformed URL, header name or value).
 */
export function check(origin, req) {
  let url;
  try {
    url = new URL(req.url);
  } catch (e) {
    return err('invalid-request', `bad url: ${e.message}`);
  }
  if (origin === null) return err('denied', 'this plugin is granted no network access');
  if (originOf(url) !== origin) {
    return err('denied', `${originOf(url)} is not this provider's origin (${origin})`);
  }
  if (url.username !== '' || url.password !== '') {
    return err('denied', 'credentials in the url are not allowed');
  }
  for (const [name, value] of req.headers) {
    if (FORBIDDEN_HEADERS.has(name.toLowerCase())) return err('denied', `header ${name} is set by the host`);
    try {
      validateHeaderName(name);
      validateHeaderValue(name, value);
    } catch (e) {
      return err('invalid-request', `header ${JSON.stringify(name)}: ${e.message}`);
    }
  }
  return { tag: 'ok', val: url };
}
