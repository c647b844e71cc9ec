// Runs the Node `@openfeature/flagd-provider` against a flagd-compatible daemon and prints one JSON line per check.
//
// Used by daemon/tests/it/clients.rs, which owns the flag file and the expected results; this program only
// evaluates and reports, it asserts nothing itself. The protocol on stdout is the same as
// clients/python/check_client.py: one {"check": ...} line per check, {"event":"ready"}, then (after the caller
// edited the flag file and wrote a line to stdin) {"check":"change-event", ...} and {"event":"done"}.
// On a timeout it prints {"event":"timeout","waiting_for":...} and exits with code 3.

import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline';
import { OpenFeature, ProviderEvents } from '@openfeature/server-sdk';
import { FlagdProvider } from '@openfeature/flagd-provider';

// [check name, evaluation method, flag key, code default, targeting key, context attributes]
const CHECKS = [
  ['boolean', 'Boolean', 'bool-flag', false, undefined, {}],
  ['string', 'String', 'string-flag', 'code-default', undefined, {}],
  ['integer', 'Number', 'int-flag', 0, undefined, {}],
  ['float', 'Number', 'float-flag', 0.0, undefined, {}],
  ['object', 'Object', 'object-flag', {}, undefined, {}],
  ['targeting-match', 'String', 'targeted-flag', 'code-default', undefined, { email: 'admin@example.com' }],
  ['targeting-default', 'String', 'targeted-flag', 'code-default', undefined, { email: 'someone@example.org' }],
  ['fractional-red', 'String', 'fractional-flag', 'code-default', 'user-9', {}],
  ['fractional-blue', 'String', 'fractional-flag', 'code-default', 'user-2', {}],
  ['disabled', 'String', 'disabled-flag', 'code-default', undefined, {}],
  ['missing', 'Boolean', 'missing-flag', true, undefined, {}],
  ['type-mismatch', 'Boolean', 'string-flag', true, undefined, {}],
  ['static-context', 'String', 'tier-flag', 'code-default', undefined, {}],
  ['before-change', 'String', 'change-flag', 'code-default', undefined, {}],
];

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    mode: { type: 'string' },
    flags: { type: 'string' },
    timeout: { type: 'string', default: '30' },
    // Optional: TLS with a custom CA (provider options tls + certPath) and a unix socket (socketPath).
    tls: { type: 'boolean', default: false },
    'cert-path': { type: 'string' },
    'socket-path': { type: 'string' },
  },
});

function emit(obj) {
  const sorted = Object.fromEntries(Object.entries(obj).sort(([a], [b]) => a.localeCompare(b)));
  process.stdout.write(JSON.stringify(sorted) + '\n');
}

const state = { waitingFor: 'provider ready' };
const timer = setTimeout(() => {
  emit({ event: 'timeout', waiting_for: state.waitingFor });
  process.exit(3);
}, Number(args.timeout) * 1000);

async function evaluate(client, method, key, fallback, targetingKey, attributes) {
  const context = { ...attributes };
  if (targetingKey !== undefined) {
    context.targetingKey = targetingKey;
  }
  const details = await client[`get${method}Details`](key, fallback, context);
  return {
    value: details.value,
    variant: details.variant ?? null,
    reason: details.reason ?? null,
    error_code: details.errorCode ?? null,
    error_message: details.errorMessage ?? null,
  };
}

async function main() {
  if (!['rpc', 'in-process', 'file'].includes(args.mode) || !args.port || !args.flags) {
    throw new Error(
      'usage: check-client.mjs --port N --mode rpc|in-process|file --flags PATH [--host H] [--tls] ' +
        '[--cert-path CA.pem] [--socket-path PATH]',
    );
  }
  const events = [];
  OpenFeature.addHandler(ProviderEvents.ConfigurationChanged, (details) => {
    events.push([...(details?.flagsChanged ?? [])]);
  });

  const options = {
    host: args.host,
    port: Number(args.port),
    resolverType: args.mode === 'rpc' ? 'rpc' : 'in-process',
    cache: 'disabled',
  };
  if (args.mode === 'file') {
    options.offlineFlagSourcePath = args.flags;
  }
  if (args.tls) {
    options.tls = true;
  }
  if (args['cert-path'] !== undefined) {
    options.certPath = args['cert-path'];
  }
  if (args['socket-path'] !== undefined) {
    options.socketPath = args['socket-path'];
  }
  await OpenFeature.setProviderAndWait(new FlagdProvider(options));
  const client = OpenFeature.getClient();

  for (const [name, method, key, fallback, targetingKey, attributes] of CHECKS) {
    state.waitingFor = `check ${name}`;
    const result = await evaluate(client, method, key, fallback, targetingKey, attributes);
    emit({ check: name, ...result });
  }

  // Forget the events of the initial load before announcing readiness: the caller edits the file only after
  // "ready", so every event from now on may be the edit's (and it can arrive before the stdin line does).
  events.length = 0;
  emit({ event: 'ready' });
  state.waitingFor = "a line on stdin (the caller's signal that the flag file was edited)";
  const lines = createInterface({ input: process.stdin });
  await new Promise((resolve) => lines.once('line', resolve));
  lines.close();

  state.waitingFor = 'a configuration-change event naming change-flag, then its new value';
  for (;;) {
    const announced = [...new Set(events.flat())].sort();
    if (announced.includes('change-flag')) {
      const result = await evaluate(client, 'String', 'change-flag', 'code-default', undefined, {});
      if (result.value !== 'before') {
        emit({ check: 'change-event', flags_changed: announced, ...result });
        break;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }

  emit({ event: 'done' });
  clearTimeout(timer);
  // The provider's streams and retry timers must not keep the process alive.
  process.exit(0);
}

main().catch((error) => {
  emit({ event: 'error', message: String(error?.stack ?? error) });
  process.exit(2);
});
