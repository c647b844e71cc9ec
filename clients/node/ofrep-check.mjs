// Evaluates a fixed list of flags through the Node OFREP provider (@openfeature/ofrep-provider) against an
// OFREP server and prints one JSON line per evaluation. Used by daemon/tests/it/ofrep_clients.rs.
//
// Usage: node ofrep-check.mjs BASE_URL CHECKS_JSON
// CHECKS_JSON is a list of {"kind", "flag", "default", "context"}; kind is boolean|string|integer|float|object.
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

const [baseUrl, checksJson] = process.argv.slice(2);
const checks = JSON.parse(checksJson);
await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl }));
const client = OpenFeature.getClient();
const methods = {
  boolean: (k, d, c) => client.getBooleanDetails(k, d, c),
  string: (k, d, c) => client.getStringDetails(k, d, c),
  integer: (k, d, c) => client.getNumberDetails(k, d, c),
  float: (k, d, c) => client.getNumberDetails(k, d, c),
  object: (k, d, c) => client.getObjectDetails(k, d, c),
};
for (const check of checks) {
  const details = await methods[check.kind](check.flag, check.default, check.context ?? {});
  console.log(
    JSON.stringify({
      flag: check.flag,
      value: details.value,
      variant: details.variant ?? null,
      reason: details.reason ?? null,
      error: details.errorCode ?? null,
    }),
  );
}
await OpenFeature.close();
