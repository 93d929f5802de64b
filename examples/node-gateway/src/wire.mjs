// The contract's values as jco hands them over (camelCase records, `bigint` for 64-bit numbers,
// `{tag, val}` variants, `undefined` for `none`), to and from the JSON a gateway works with: the
// Rust runtime's `json` shape (snake_case, amounts in minor units with their currency, times in
// ms since the epoch, `null` for none). Answers go through a Sanitizer on the way out: secrets
// redacted, ids held to MAX_ID bytes, messages cut to MAX_MESSAGE (`runtime/src/sanitize.rs`).

import { ConfigError, PluginFailure } from './errors.mjs';

/** The longest id or code a plugin may answer with, in bytes. */
export const MAX_ID = 128;
/** The longest list cursor, in bytes. */
export const MAX_CURSOR = 1024;
/** The longest message kept, in bytes (the marker included). */
export const MAX_MESSAGE = 2048;
/** What ends a message that was cut. */
export const TRUNCATED = '…[truncated]';

const bytes = (s) => Buffer.byteLength(s, 'utf8');

/** Removes one provider's secrets from its plugin's answer and holds it to the caps. */
export class Sanitizer {
  constructor(redactor, provider, op) {
    this.redactor = redactor;
    this.provider = provider;
    this.op = op;
  }

  capped(field, text, cap) {
    const clean = this.redactor.redact(text);
    if (bytes(clean) > cap) {
      throw new PluginFailure(
        `plugin ${this.provider} answered ${this.op} with ${field} of ${bytes(clean)} bytes, over the cap of ${cap}`,
      );
    }
    return clean;
  }

  id(field, text) {
    return text === undefined ? null : this.capped(field, text, MAX_ID);
  }

  message(text) {
    if (text === undefined) return null;
    const clean = this.redactor.redact(text);
    if (bytes(clean) <= MAX_MESSAGE) return clean;
    const room = MAX_MESSAGE - bytes(TRUNCATED);
    let cut = Buffer.from(clean, 'utf8').subarray(0, room).toString('utf8');
    // A cut inside a character leaves U+FFFD at the end: drop it.
    if (cut.endsWith('\uFFFD')) cut = cut.slice(0, -1);
    return cut + TRUNCATED;
  }
}

const number = (v) => (v === undefined ? null : Number(v));

/** An amount as a JS number, which holds integers exactly only up to 2^53: past that the
 * answer is refused rather than rounded (money is never shown other than it is). */
function amount(v, s) {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new PluginFailure(`plugin ${s.provider} answered ${s.op} with amount_minor ${v}, beyond the integers JavaScript holds exactly`);
  }
  return Number(v);
}

/** A refund, as JSON. */
export function refund(r, s) {
  return {
    provider_refund_id: s.id('provider_refund_id', r.providerRefundId),
    external_refund_id: s.id('external_refund_id', r.externalRefundId),
    original_transaction_id: s.id('original_transaction_id', r.originalTransactionId),
    amount_minor: amount(r.amount.amountMinor, s),
    currency: s.id('currency', r.amount.currency),
    status: r.status,
    provider_status: s.id('provider_status', r.providerStatus),
    failure_reason: s.message(r.failureReason),
    created_at: number(r.createdAt),
    updated_at: number(r.updatedAt),
  };
}

/** A `refund-error`, as the JSON the command line prints for it. */
export function refundError(e, s) {
  switch (e.tag) {
    case 'refused':
      return {
        refused: {
          kind: e.val.kind,
          provider_code: s.id('provider_code', e.val.providerCode),
          message: s.message(e.val.message),
          http_status: number(e.val.httpStatus),
        },
      };
    case 'retryable':
      return {
        retryable: {
          provider_code: s.id('provider_code', e.val.providerCode),
          message: s.message(e.val.message),
          http_status: number(e.val.httpStatus),
          retry_after_ms: number(e.val.retryAfterMs),
        },
      };
    default:
      return { unknown_outcome: s.message(e.val) };
  }
}

/** A page of `list-refunds`, as JSON. */
export function page(p, s) {
  return {
    refunds: p.refunds.map((r) => refund(r, s)),
    next_cursor: p.nextCursor === undefined ? null : s.capped('next_cursor', p.nextCursor, MAX_CURSOR),
  };
}

/** A webhook event, with its refund, as JSON. */
export function webhookEvent(e, s) {
  return {
    event_id: s.id('event_id', e.eventId),
    event_type: s.id('event_type', e.eventType),
    occurred_at: number(e.occurredAt),
    refund: refund(e.refund, s),
  };
}

/** Why a webhook was rejected, as JSON (the `rejected` object). */
export function webhookError(e, s) {
  switch (e.tag) {
    case 'missing-header':
      return { reason: 'missing_header', header: s.message(e.val) };
    case 'invalid-signature':
      return { reason: 'invalid_signature' };
    case 'stale-timestamp':
      return { reason: 'stale_timestamp', skew_s: Number(e.val) };
    default:
      return { reason: 'malformed', message: s.message(e.val) };
  }
}

/** What a plugin says of itself, as JSON. */
export function providerInfo(i, s) {
  return {
    id: s.id('id', i.id),
    version: s.id('version', i.version),
    display_name: s.message(i.displayName),
    currencies: i.currencies.map((c) => s.id('currency', c)),
    partial_refunds: i.partialRefunds,
    multiple_refunds: i.multipleRefunds,
    refund_window_days: number(i.refundWindowDays),
    status_queries: i.statusQueries,
    reversal_window_days: number(i.reversalWindowDays),
    max_list_range_days: number(i.maxListRangeDays),
  };
}

// Into the contract, from what a gateway passes. A value of the wrong type is a ConfigError:
// nothing is sent.

function text(v, field, { optional = false } = {}) {
  if ((v === undefined || v === null) && optional) return undefined;
  if (typeof v !== 'string') throw new ConfigError(`${field} must be a string`);
  return v;
}

/** An integer (a safe JS integer, a bigint or a decimal string) as the contract's s64. */
export function integer(v, field) {
  const ok =
    (typeof v === 'number' && Number.isSafeInteger(v)) ||
    typeof v === 'bigint' ||
    (typeof v === 'string' && /^-?[0-9]+$/.test(v));
  const n = ok ? BigInt(v) : undefined;
  if (n === undefined || n < -(2n ** 63n) || n >= 2n ** 63n) {
    throw new ConfigError(`${field} must be an integer (got ${JSON.stringify(String(v))})`);
  }
  return n;
}

/** `{original_transaction_id, external_refund_id, amount_minor, currency, reason?, order_id?}`. */
export function refundRequest(r) {
  if (r === null || typeof r !== 'object') throw new ConfigError('a refund request must be an object');
  return {
    originalTransactionId: text(r.original_transaction_id, 'original_transaction_id'),
    externalRefundId: text(r.external_refund_id, 'external_refund_id'),
    amount: { amountMinor: integer(r.amount_minor, 'amount_minor'), currency: text(r.currency, 'currency') },
    reason: text(r.reason, 'reason', { optional: true }),
    orderId: text(r.order_id, 'order_id', { optional: true }),
  };
}

/** `{external_refund_id}` or `{provider_refund_id}`. */
export function refundLookup(l) {
  const external = l?.external_refund_id;
  const provider = l?.provider_refund_id;
  if ((external === undefined) === (provider === undefined)) {
    throw new ConfigError('a lookup names exactly one of external_refund_id and provider_refund_id');
  }
  return external !== undefined
    ? { tag: 'external-refund-id', val: text(external, 'external_refund_id') }
    : { tag: 'provider-refund-id', val: text(provider, 'provider_refund_id') };
}

/** `{from, to}`, ms since the epoch (numbers, bigints or Dates). */
export function timeRange(range) {
  const ms = (v, field) => integer(v instanceof Date ? v.getTime() : v, field);
  return { from: ms(range?.from, 'from'), to: ms(range?.to, 'to') };
}

/** `{method?, path?, query?, headers, body}`: headers an object or a list of pairs, body bytes
 * or a string (its UTF-8). */
export function webhookRequest(w) {
  if (w === null || typeof w !== 'object') throw new ConfigError('a webhook request must be an object');
  const headers = Array.isArray(w.headers) ? w.headers : Object.entries(w.headers ?? {});
  return {
    method: text(w.method ?? 'POST', 'method').toUpperCase(),
    path: text(w.path ?? '/', 'path'),
    query: text(w.query, 'query', { optional: true }),
    headers: headers.map(([k, v]) => [text(k, 'header name'), text(v, `header ${k}`)]),
    body: typeof w.body === 'string' ? new Uint8Array(Buffer.from(w.body, 'utf8')) : new Uint8Array(w.body ?? []),
  };
}
