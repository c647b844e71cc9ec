// Runs the browser OFREP provider (@openfeature/ofrep-web-provider) with change streams (server-sent
// events, its default change detection) in Node, whose EventSource needs --experimental-eventsource on
// Node 20. Used by daemon/tests/it/ofrep_clients.rs.
//
// Usage: node --experimental-eventsource ofrep-web-sse-check.mjs BASE_URL FLAG
// Prints {"event":"ready",...} with the flag's details, then {"event":"changed",...} after the next
// configuration change the provider sees (no polling: only an event can tell it), then exits. Gives up
// after 40 s.
import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

const [baseUrl, flag] = process.argv.slice(2);
if (typeof EventSource === 'undefined') {
  console.error('no EventSource: run node with --experimental-eventsource');
  process.exit(3);
}
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
  pollInterval: 0,
  changeDetection: 'sse',
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
