// The errors a gateway gets from `loadPlugin` and the plugin's operations. Each carries
// `answer`: the JSON the command line prints for it (the Rust embedding example's shape).

/** A provider-config, a component file or an argument that cannot be used: nothing was sent. */
export class ConfigError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** The plugin failed to run the operation (trap, deadline, an answer over the caps): not the
 * provider's answer, so not final. */
export class PluginFailure extends Error {
  constructor(message) {
    super(message);
    this.name = 'PluginFailure';
    this.answer = { error: message };
  }
}

/** A refund operation answered with the contract's `refund-error`. `answer` is
 * `{refused: {...}}` (final), `{retryable: {...}}` or `{unknown_outcome: "..."}`. */
export class RefundError extends Error {
  constructor(answer) {
    const [kind, detail] = Object.entries(answer)[0];
    super(`${kind}: ${typeof detail === 'string' ? detail : detail.message}`);
    this.name = 'RefundError';
    this.answer = answer;
    /** True when the provider (or the plugin) finally refused: sending it again will not help. */
    this.final = kind === 'refused';
  }
}

/** A webhook the plugin did not accept: `answer` is `{rejected: {reason, ...}}`. */
export class WebhookRejected extends Error {
  constructor(rejected) {
    super(`webhook rejected: ${rejected.reason}`);
    this.name = 'WebhookRejected';
    this.answer = { rejected };
  }
}
