// Test fixture: a real OpenID provider for Latchkey's single sign-on end-to-end tests
// (Latchkey is the relying party). panva's oidc-provider (npm "oidc-provider", pinned in
// package.json) on plain http on the loopback interface, with one confidential client and
// oidc-provider's development login form.
//
// Environment (all required):
//   PORT           listen on 127.0.0.1:PORT; the issuer is http://127.0.0.1:PORT
//   CLIENT_ID      the one client (confidential, client_secret_basic, authorization code
//   CLIENT_SECRET  flow only, PKCE S256 required, ID tokens signed RS256)
//   REDIRECT_URI   its one redirect URI (matched exactly)
//
// Sign-in: GET /auth?... -> 303 to the login form at /interaction/<uid> (fields prompt=login,
// login, password; any password is accepted) -> POST it -> 303 back to /auth/<uid> -> 303 to
// REDIRECT_URI?code=...&state=...&iss=... The consent screen is skipped (first-party client:
// see loadExistingGrant). The account id is whatever was typed as login:
//   sub            the login
//   email          the login if it contains '@', else <login>@example.test
//   email_verified true, except for logins starting with "unverified"
//   name           the part of the login before '@'
// email, email_verified and name are in the ID token itself (conformIdTokenClaims: false), and
// so is auth_time (the client has require_auth_time). max_age=0 and prompt=login show the
// login form again even when the provider already has a session.
//
// Prints exactly one line on stdout, "listening on http://127.0.0.1:PORT", once it listens;
// everything else (oidc-provider's notices and warnings, errors) goes to stderr.
import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider from 'oidc-provider';

// oidc-provider prints its notices with console.info (stdout): keep stdout for the one line.
console.info = (...args) => console.error(...args);

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is required (environment)`);
    process.exit(2);
  }
  return value;
}

const PORT = Number(required('PORT'));
const CLIENT_ID = required('CLIENT_ID');
const CLIENT_SECRET = required('CLIENT_SECRET');
const REDIRECT_URI = required('REDIRECT_URI');
const HOST = '127.0.0.1';
const ISSUER = `http://${HOST}:${PORT}`;

// A fresh RSA signing key per start (RS256, oidc-provider's default ID token algorithm);
// the relying party reads it from jwks_uri.
const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
const jwks = { keys: [{ ...rsa, kid: 'sso-test-rs256', use: 'sig', alg: 'RS256' }] };

function accountClaims(id) {
  const email = id.includes('@') ? id : `${id}@example.test`;
  return {
    sub: id,
    email,
    email_verified: !id.startsWith('unverified'),
    name: id.split('@')[0],
  };
}

const provider = new Provider(ISSUER, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
      require_auth_time: true,
    },
  ],
  jwks,
  // Fixed test key; on plain http the cookies are simply not marked Secure.
  cookies: { keys: ['latchkey-sso-test-provider-cookie-key'] },
  features: {
    // The development login form: any login, any password.
    devInteractions: { enabled: true },
  },
  responseTypes: ['code'],
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile'],
  claims: {
    acr: null,
    auth_time: null,
    iss: null,
    sid: null,
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // Scope claims in the ID token too, not only at the userinfo endpoint.
  conformIdTokenClaims: false,
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => accountClaims(id),
  }),
  // No consent screen for this first-party client (oidc-provider's documented recipe): the
  // grant for the signed-in account always covers what is asked for.
  loadExistingGrant: async (ctx) => {
    const { oidc } = ctx;
    const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
    let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
    if (!grant || grant.accountId !== oidc.session.accountId) {
      grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
    }
    grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
    grant.addOIDCClaims([...oidc.requestParamClaims]);
    await grant.save();
    return grant;
  },
  // oidc-provider's defaults, stated so it does not print a notice for each.
  ttl: {
    AccessToken: 60 * 60,
    IdToken: 60 * 60,
    Interaction: 60 * 60,
    Session: 14 * 24 * 60 * 60,
    Grant: 14 * 24 * 60 * 60,
  },
});

provider.on('server_error', (_ctx, err) => console.error('server_error', err));
for (const event of ['authorization.error', 'grant.error', 'userinfo.error', 'end_session.error']) {
  provider.on(event, (_ctx, err) => console.error(event, err.message, err.error_detail || err.error_description || ''));
}

const server = http.createServer(provider.callback());
server.on('error', (err) => {
  console.error('server error', err);
  process.exit(1);
});
server.listen(PORT, HOST, () => {
  process.stdout.write(`listening on ${ISSUER}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
