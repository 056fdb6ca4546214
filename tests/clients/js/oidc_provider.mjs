// A real OpenID Connect provider for the upstream sign-in tests (tests/e2e/sso.rs): the
// `oidc-provider` package with its development login and consent pages (any username signs
// in; the account's `sub`, `preferred_username` and `name` derive from it).
//
// Prints `issuer <url>` once listening on a free loopback port, reads the one redirect URI
// its client may use from stdin, prints `ready`, and exits when stdin closes.
import http from 'node:http';
import readline from 'node:readline';
import Provider from 'oidc-provider';

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;
console.log(`issuer ${issuer}`);

const lines = readline.createInterface({ input: process.stdin });
const redirectUri = await new Promise((resolve) => lines.once('line', (line) => resolve(line.trim())));

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'trellis',
    client_secret: 'trellis-secret',
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: { openid: ['sub'], profile: ['preferred_username', 'name'] },
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub, preferred_username: sub.split('@')[0], name: `User ${sub}` }),
  }),
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  cookies: { keys: ['trellis-test-cookie-key'] },
});
// The development keys and pages warn on stderr; the test shows stderr only on failure.
server.on('request', provider.callback());
console.log('ready');
lines.on('close', () => process.exit(0));
