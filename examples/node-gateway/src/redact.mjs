// Secrets out of every text that leaves the plugin: log lines and answers. The rules are the Rust
// runtime's (`runtime/src/secret.rs`): configured secret values, and credentials the provider
// issued at run time (credential-named JSON fields and headers of at least MIN_TOKEN bytes).

/** What replaces a secret. */
export const REDACTED = '[redacted]';

/** The shortest run-time credential looked for. */
export const MIN_TOKEN = 16;

/** Replaces each of `secrets` (longest first, empty ones ignored) by REDACTED. */
export class Redactor {
  constructor(secrets = []) {
    this.secrets = [...new Set(secrets.filter((s) => s.length > 0))].sort((a, b) => b.length - a.length);
  }

  /** A redactor removing these secrets and `more`. */
  with(more) {
    return new Redactor([...this.secrets, ...more]);
  }

  redact(text) {
    let out = text;
    for (const secret of this.secrets) {
      if (out.includes(secret)) out = out.split(secret).join(REDACTED);
    }
    return out;
  }
}

/** Whether a field or header name says its value is a credential: its last word is `token`,
 * `secret`, `password`, `key`, `authorization` or `credential(s)` (`access_token`, `authToken`,
 * `X-Api-Key`), not merely contains one (`tokenExpires`). */
export function namesACredential(name) {
  let last = '';
  let prevLower = false;
  for (const c of name) {
    const lower = c.toLowerCase();
    const isUpper = c !== lower;
    if (c === '_' || c === '-' || c === '.' || (isUpper && prevLower)) last = '';
    if (/[\p{L}\p{N}]/u.test(c)) last += lower;
    prevLower = c !== c.toUpperCase();
  }
  return ['token', 'secret', 'password', 'key', 'authorization', 'credential', 'credentials'].includes(last);
}

/** The string values of credential-named fields of a JSON body, at least MIN_TOKEN long. */
export function credentialsIn(body) {
  let value;
  try {
    value = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch {
    return [];
  }
  const out = [];
  const walk = (v) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === 'object') {
      for (const [k, item] of Object.entries(v)) {
        if (typeof item === 'string' && namesACredential(k) && item.length >= MIN_TOKEN) out.push(item);
        else walk(item);
      }
    }
  };
  walk(value);
  return out;
}

/** The values of credential-named headers, at least MIN_TOKEN long. */
export function credentialHeaders(headers) {
  return headers.filter(([name, value]) => namesACredential(name) && value.length >= MIN_TOKEN).map(([, v]) => v);
}
