// One local OpenID Provider (oidc-provider 9.13.3) for tests and development: `idporten`
// (citizens: patients and relatives) or `helseid` (health personnel: coordinators,
// clinicians). Run by infra/oidc/start; see infra/README.md. Synthetic accounts only: any
// login name is accepted and becomes the account id (`sub`).
//
//   node provider.mjs --name idporten --port 19443 [--host 127.0.0.1] [--issuer URL] [--keys FILE]
//
// Environment (the same names infra/oidc/env prints; all optional):
//   OIDC_TEST_REDIRECT_URIS                  registered redirect URIs, comma list
//   OIDC_TEST_POST_LOGOUT_REDIRECT_URIS      registered post-logout redirect URIs, comma list
//   OIDC_TEST_ALLOW_LOOPBACK_REDIRECTS       1 (default): also any http://127.0.0.1|localhost:<port>/...
//   OIDC_TEST_RESOURCE                       resource indicator of the care-plan API (default urn:careplan)
//   OIDC_TEST_AUDIENCE                       `aud` of its access tokens (default careplan)
//   OIDC_TEST_PUBLIC_CLIENT_ID               public web client, PKCE S256, no secret (default careplan-web)
//   OIDC_TEST_CONFIDENTIAL_CLIENT_ID/_SECRET client_secret_basic web client (default careplan-bff / careplan-bff-secret)
//   OIDC_TEST_SYSTEM_CLIENT_ID/_SECRET       client_credentials, the EPR integration (default careplan-epr / careplan-epr-secret)
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    name: { type: 'string' },
    port: { type: 'string' },
    host: { type: 'string' },
    issuer: { type: 'string' },
    keys: { type: 'string' },
  },
});

const env = process.env;
const name = args.name;
if (!['idporten', 'helseid'].includes(name)) {
  console.error(`provider.mjs: --name must be idporten or helseid, got ${JSON.stringify(name)}`);
  process.exit(2);
}
const host = args.host ?? '127.0.0.1';
const port = Number(args.port ?? (name === 'idporten' ? 19443 : 19444));
const issuer = args.issuer ?? `http://${host}:${port}`;
const keysFile = args.keys; // JWKS with the private key; generated on first start. Unset: a fresh key each start

const list = (value, fallback) => (value ?? fallback).split(',').map((s) => s.trim()).filter(Boolean);
const redirectUris = list(env.OIDC_TEST_REDIRECT_URIS, 'http://127.0.0.1:5000/auth/callback');
const postLogoutRedirectUris = list(env.OIDC_TEST_POST_LOGOUT_REDIRECT_URIS, 'http://127.0.0.1:5000/');
const allowLoopback = !['0', 'false', 'no'].includes((env.OIDC_TEST_ALLOW_LOOPBACK_REDIRECTS ?? '1').toLowerCase());
// oidc-provider only accepts resource indicators that are absolute URIs (RFC 8707), so the
// indicator is `urn:careplan` while the tokens' audience is plain `careplan`.
const resource = env.OIDC_TEST_RESOURCE ?? 'urn:careplan';
const audience = env.OIDC_TEST_AUDIENCE ?? 'careplan';

const clients = {
  public: env.OIDC_TEST_PUBLIC_CLIENT_ID ?? 'careplan-web',
  confidential: env.OIDC_TEST_CONFIDENTIAL_CLIENT_ID ?? 'careplan-bff',
  confidentialSecret: env.OIDC_TEST_CONFIDENTIAL_CLIENT_SECRET ?? 'careplan-bff-secret',
  system: env.OIDC_TEST_SYSTEM_CLIENT_ID ?? 'careplan-epr',
  systemSecret: env.OIDC_TEST_SYSTEM_CLIENT_SECRET ?? 'careplan-epr-secret',
};

// -- signing keys: RS256, kept in var/oidc/<name>/jwks.json so tokens outlive a restart ----
function signingKeys() {
  if (keysFile && existsSync(keysFile)) return JSON.parse(readFileSync(keysFile, 'utf8'));
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwks = { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: `${name}-${randomUUID().slice(0, 8)}`, alg: 'RS256', use: 'sig' }] };
  if (keysFile) {
    mkdirSync(dirname(keysFile), { recursive: true });
    writeFileSync(`${keysFile}.tmp`, JSON.stringify(jwks), { mode: 0o600 });
    chmodSync(`${keysFile}.tmp`, 0o600);
    renameSync(`${keysFile}.tmp`, keysFile);
  }
  return jwks;
}

// helseid: login names starting with `clin` are clinicians, everyone else a coordinator.
const roleOf = (accountId) => (accountId.startsWith('clin') ? 'clinician' : 'coordinator');

const isLoopbackRedirect = (value) => {
  const url = URL.parse(value);
  return !!url && url.protocol === 'http:' && ['127.0.0.1', 'localhost'].includes(url.hostname)
    && !url.hash && !url.username && !url.password;
};

const webClient = {
  application_type: 'web',
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: redirectUris,
  post_logout_redirect_uris: postLogoutRedirectUris,
  scope: 'openid profile offline_access',
};

const configuration = {
  clients: [
    { ...webClient, client_id: clients.public, token_endpoint_auth_method: 'none' },
    {
      ...webClient,
      client_id: clients.confidential,
      client_secret: clients.confidentialSecret,
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: clients.system,
      client_secret: clients.systemSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
  ],
  jwks: signingKeys(),
  cookies: {
    // Cookies ignore ports: both providers on 127.0.0.1 would otherwise share `_session`.
    names: { session: `_session_${name}`, interaction: `_interaction_${name}`, resume: `_interaction_resume_${name}` },
    keys: [randomBytes(32).toString('base64url')],
  },
  scopes: ['openid', 'profile', 'offline_access'],
  claims: {
    openid: ['sub'],
    profile: name === 'helseid' ? ['role'] : [],
  },
  // Default (true) keeps scope claims (role) out of the id_token when an access token is
  // issued, expecting userinfo; but the access token is for careplan, not for userinfo.
  conformIdTokenClaims: false,
  async findAccount(ctx, accountId) {
    return {
      accountId,
      async claims() {
        return name === 'helseid' ? { sub: accountId, role: roleOf(accountId) } : { sub: accountId };
      },
    };
  },
  async extraTokenClaims(ctx, token) {
    if (name !== 'helseid') return undefined;
    if (token.kind === 'ClientCredentials') return { role: 'integration' };
    if (token.accountId) return { role: roleOf(token.accountId) };
    return undefined;
  },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A login (or client_credentials request) without `resource` is for the care-plan API.
      defaultResource: async () => resource,
      // ...and so is the token the code is exchanged for (else: an opaque userinfo token).
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, indicator) => {
        if (indicator !== resource) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
        return {
          scope: 'openid profile',
          audience,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    ClientCredentials: 600,
    IdToken: 3600,
    Interaction: 3600,
    Session: 8 * 3600,
    Grant: 8 * 3600,
    RefreshToken: 8 * 3600,
  },
};

const provider = new Provider(issuer, configuration);

if (allowLoopback) {
  // oidc-provider compares redirect URIs exactly; tests run their callbacks on random ports.
  const { redirectUriAllowed, postLogoutRedirectUriAllowed } = provider.Client.prototype;
  provider.Client.prototype.redirectUriAllowed = function allowed(value) {
    return (this.responseTypes.length > 0 && isLoopbackRedirect(value)) || redirectUriAllowed.call(this, value);
  };
  provider.Client.prototype.postLogoutRedirectUriAllowed = function allowed(value) {
    return (this.responseTypes.length > 0 && isLoopbackRedirect(value)) || postLogoutRedirectUriAllowed.call(this, value);
  };
}

provider.on('server_error', (ctx, err) => console.error(`${name}: server_error`, err));

const server = provider.listen(port, host, () => {
  console.log(`${name}: oidc-provider listening on ${host}:${port}, issuer ${issuer}`);
  console.log(`${name}: clients public=${clients.public} confidential=${clients.confidential} system=${clients.system}; resource ${resource} (aud ${audience})`);
});
server.on('error', (err) => {
  console.error(`${name}: cannot listen on ${host}:${port}: ${err.message}`);
  process.exit(1);
});

const shutdown = (signal) => {
  console.log(`${name}: ${signal}, shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
