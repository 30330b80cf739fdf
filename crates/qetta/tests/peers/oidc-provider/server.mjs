// A certified OpenID Provider (panva/oidc-provider) on loopback, for the integration test of the
// generic OAuth 2.0 / OpenID Connect client (crates/qetta/tests/it/oidc_peer.rs).
//
// Environment:
//   OIDC_PEER_PORT      port to listen on (127.0.0.1), required
//   OIDC_PEER_REDIRECT  the confidential client's redirect URI (default http://127.0.0.1:9/cb)
//
// Clients:
//   qetta-rs   confidential, client_secret_basic, ID tokens RS256
//   qetta-es   confidential, client_secret_post,  ID tokens ES256
// Both: authorization_code + refresh_token, PKCE (S256) required, refresh tokens issued on every
// code grant and rotated on every refresh (a rotated-out refresh token is refused and revokes the
// grant), revocation enabled. The provider's own development interactions are on: the test
// signs in as any login name over HTTP (form posts with the provider's cookies) and consents.
// It prints "oidc-peer listening on <issuer>" once it accepts connections.

import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PEER_PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error('OIDC_PEER_PORT must be a port number');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const redirect = process.env.OIDC_PEER_REDIRECT || 'http://127.0.0.1:9/cb';

// Fresh signing keys per run (no development keys from the package).
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });

const accountClaims = (sub) => ({
  sub,
  name: `Peer User ${sub}`,
  email: `${sub}@peer.test`,
  email_verified: true,
});

const configuration = {
  clients: [
    {
      client_id: 'qetta-rs',
      client_secret: 'peer secret: with/special+chars',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [redirect],
      id_token_signed_response_alg: 'RS256',
    },
    {
      client_id: 'qetta-es',
      client_secret: 'peer-secret-es-0123456789',
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [redirect],
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks: { keys: [{ ...rsa, kid: 'peer-rsa-1', use: 'sig', alg: 'RS256' }, { ...ec, kid: 'peer-ec-1', use: 'sig', alg: 'ES256' }] },
  claims: { openid: ['sub'], profile: ['name'], email: ['email', 'email_verified'] },
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => accountClaims(sub) }),
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: false },
  },
  pkce: { required: () => true },
  // A refresh token on every code grant of a client allowed the grant (not only with
  // offline_access), rotated on every use.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, RefreshToken: 86400, Interaction: 600, Session: 3600, Grant: 86400 },
  cookies: { keys: ['qetta-oidc-peer-cookie-key-0123456789'] },
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-peer listening on ${issuer}`);
});
