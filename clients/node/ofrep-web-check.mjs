// Runs the browser OFREP provider (@openfeature/ofrep-web-provider, bulk evaluation with ETag polling) in Node
// against an OFREP server. Used by daemon/tests/it/ofrep_clients.rs.
//
// Usage: node ofrep-web-check.mjs BASE_URL FLAG POLL_MS
// Prints {"event":"ready",...} with the flag's details, then {"event":"changed",...} after the next
// configuration change the provider sees, then exits. Gives up after 40 s.
import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

const [baseUrl, flag, pollMs] = process.argv.slice(2);
const timer = setTimeout(() => {
  console.error('timed out waiting for a configuration change');
  process.exit(2);
}, 40_000);
const report = (event) => {
  const details = OpenFeature.getClient().getStringDetails(flag, 'dflt');
  console.log(
    JSON.stringify({ event, value: details.value, variant: details.variant ?? null, reason: details.reason ?? null }),
  );
};
await OpenFeature.setContext({ targetingKey: 'user-1' });
const provider = new OFREPWebProvider({
  baseUrl,
  pollInterval: Number(pollMs),
  changeDetection: 'polling',
  cacheMode: 'disabled',
});
await OpenFeature.setProviderAndWait(provider);
report('ready');
OpenFeature.getClient().addHandler(ProviderEvents.ConfigurationChanged, async () => {
  report('changed');
  clearTimeout(timer);
  await OpenFeature.close();
  process.exit(0);
});
