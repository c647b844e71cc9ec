// Runs the browser flagd provider (@openfeature/flagd-web-provider with @openfeature/web-sdk) in Node against
// a daemon's evaluation port over Connect: the provider opens an EventStream, fetches every flag with
// ResolveAll when provider_ready arrives, and fetches again on configuration_change. Used by
// daemon/tests/it/web_client.rs.
//
// Usage: node web-check.mjs PORT CHECKS_JSON CHANGE_FLAG
// CHECKS_JSON is an array of {"kind": "boolean|string|number|object", "flag": KEY, "default": VALUE}.
// Prints one JSON line per check, then {"event":"ready"}; after the next configuration change it prints
// {"event":"changed", ...} with CHANGE_FLAG's string details and exits. Gives up after 40 s.
import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { FlagdWebProvider } from '@openfeature/flagd-web-provider';

const [port, checksJson, changeFlag] = process.argv.slice(2);
const timer = setTimeout(() => {
  console.log(JSON.stringify({ event: 'timeout' }));
  process.exit(3);
}, 40_000);

const line = (details) => ({
  flag: details.flagKey,
  value: details.value,
  variant: details.variant ?? null,
  reason: details.reason ?? null,
  error: details.errorCode ?? null,
});

// The web SDK evaluates against one global context; ResolveAll is sent with it.
await OpenFeature.setContext({ targetingKey: 'user-1', email: 'a@example.com' });
// maxRetries < 0: no reconnection, so a refused or broken stream shows up as an error event, not a hang.
const provider = new FlagdWebProvider({ host: '127.0.0.1', port: Number(port), tls: false, maxRetries: -1 });
OpenFeature.addHandler(ProviderEvents.Error, (details) => {
  console.log(JSON.stringify({ event: 'error', message: details?.message ?? null }));
  process.exit(2);
});
await OpenFeature.setProviderAndWait(provider);
const client = OpenFeature.getClient();

for (const check of JSON.parse(checksJson)) {
  const evaluate = {
    boolean: (flag, dflt) => client.getBooleanDetails(flag, dflt),
    string: (flag, dflt) => client.getStringDetails(flag, dflt),
    number: (flag, dflt) => client.getNumberDetails(flag, dflt),
    object: (flag, dflt) => client.getObjectDetails(flag, dflt),
  }[check.kind];
  console.log(JSON.stringify(line(evaluate(check.flag, check.default))));
}

client.addHandler(ProviderEvents.ConfigurationChanged, async () => {
  console.log(JSON.stringify({ event: 'changed', ...line(client.getStringDetails(changeFlag, 'dflt')) }));
  clearTimeout(timer);
  await OpenFeature.close();
  process.exit(0);
});
console.log(JSON.stringify({ event: 'ready' }));
