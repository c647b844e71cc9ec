// The shop: its header colour, banner and checkout follow flagpole's flags (examples/flags.json) through
// the OFREP web provider, which hears each change over OFREP's change stream and re-renders without a
// reload. The OFREP base URL comes from `?ofrep=` (default: the page's own host on port 8016).
import { createRoot } from 'react-dom/client';
import { OpenFeature, OpenFeatureProvider, useBooleanFlagValue, useObjectFlagValue, useStringFlagValue } from '@openfeature/react-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

const params = new URLSearchParams(location.search);
const baseUrl = params.get('ofrep') || `${location.protocol}//${location.hostname}:8016`;

OpenFeature.setContext({ targetingKey: params.get('user') || 'visitor-1', email: params.get('email') || '' });
OpenFeature.setProvider(new OFREPWebProvider({ baseUrl, changeDetection: 'sse', cacheMode: 'disabled' }));

function Header() {
  const color = useStringFlagValue('header-color', '#333', { updateOnConfigurationChanged: true });
  const banner = useObjectFlagValue('banner', { text: '' }, { updateOnConfigurationChanged: true });
  return (
    <header>
      <h1 data-testid="header" data-color={color} style={{ color }}>Shop</h1>
      <p data-testid="banner">{banner.text}</p>
    </header>
  );
}

function Checkout() {
  const fresh = useBooleanFlagValue('new-checkout', false, { updateOnConfigurationChanged: true });
  return (
    <main>
      <h2>Checkout</h2>
      <p data-testid="checkout" data-variant={fresh ? 'new' : 'classic'}>
        {fresh ? 'One-click checkout' : 'Classic checkout'}
      </p>
    </main>
  );
}

createRoot(document.getElementById('root')).render(
  <OpenFeatureProvider suspendUntilReady={false}>
    <Header />
    <Checkout />
  </OpenFeatureProvider>,
);
