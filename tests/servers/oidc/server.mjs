// Local OpenID Connect provider for end-to-end SSO tests.
//
// Usage: node server.mjs CONFIG.json
//
// The config file is JSON:
//   {
//     "port": 0,                      // 0 = pick a free port
//     "issuer_path": "/",             // path part of the issuer ("/" or e.g. "/oidc")
//     "clients": [{"client_id", "client_secret", "redirect_uris": [...],
//                  "token_endpoint_auth_method": "client_secret_basic"}],
//     "accounts": [{"sub", "email", "email_verified", "name", "password",
//                   optional "given_name", "family_name", "preferred_username", "picture"}],
//     "mode": "normal" | "wrong_audience" | "bad_signature" | "wrong_issuer",
//     "client_auth_methods": ["client_secret_basic", "client_secret_post", "none"]
//   }
//
// Binds 127.0.0.1 only and prints one JSON line {"ready": true, "issuer": ...}
// on stdout once it accepts connections. Exits when stdin closes (the parent
// process went away), on SIGTERM and on SIGINT. Set OIDC_TEST_IGNORE_STDIN=1 to
// run it by hand with stdin not attached to a terminal.
//
// Test-only control endpoints (always at the server root, whatever issuer_path is):
//   GET  /__control/mode            -> {"mode": "..."}
//   POST /__control/mode            <- {"mode": "..."}
//   GET  /__control/log             -> {"token_requests": [...]}
//   POST /__control/log/clear
//   POST /__control/accounts        <- account object (added or replaced by sub)
//   POST /__control/clients         <- client object (added at runtime)

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import process from 'node:process';

import * as jose from 'jose';
import Provider from 'oidc-provider';

const MODES = new Set(['normal', 'wrong_audience', 'bad_signature', 'wrong_issuer']);
const WRONG_AUDIENCE = 'some-other-client';
const WRONG_ISSUER = 'http://wrong-issuer.invalid';
const SIGNING_ALG = 'RS256';
const SIGNING_KID = 'haao-test-signing-key';
const MAX_BODY = 1024 * 1024;

function fail(message) {
  process.stderr.write(`oidc test server: ${message}\n`);
  process.exit(2);
}

function debug(...args) {
  if (process.env.OIDC_TEST_DEBUG) {
    process.stderr.write(`oidc test server: ${args.join(' ')}\n`);
  }
}

// ---------------------------------------------------------------- config

if (!process.argv[2]) {
  fail('usage: node server.mjs CONFIG.json');
}

let config;
try {
  config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
} catch (err) {
  fail(`cannot read config ${process.argv[2]}: ${err.message}`);
}

const port = Number(config.port ?? 0);
let issuerPath = String(config.issuer_path ?? '/');
if (!issuerPath.startsWith('/')) issuerPath = `/${issuerPath}`;
issuerPath = issuerPath.replace(/\/+$/, ''); // "" for the root

let mode = config.mode ?? 'normal';
if (!MODES.has(mode)) fail(`unknown mode ${JSON.stringify(mode)}`);

const accounts = new Map();
function addAccount(account) {
  if (!account || typeof account.sub !== 'string' || !account.sub) {
    throw new Error('account needs a non-empty string "sub"');
  }
  accounts.set(account.sub, { ...account });
}
for (const account of config.accounts ?? []) {
  try {
    addAccount(account);
  } catch (err) {
    fail(err.message);
  }
}

function findAccountByLogin(login) {
  const wanted = String(login ?? '').trim();
  if (!wanted) return undefined;
  if (accounts.has(wanted)) return accounts.get(wanted);
  const lower = wanted.toLowerCase();
  for (const account of accounts.values()) {
    if (typeof account.email === 'string' && account.email.toLowerCase() === lower) return account;
    if (typeof account.preferred_username === 'string' && account.preferred_username === wanted) {
      return account;
    }
  }
  return undefined;
}

const clientAuthPolicy = new Map();

function clientMetadata(client) {
  if (!client || typeof client.client_id !== 'string' || !client.client_id) {
    throw new Error('client needs a non-empty string "client_id"');
  }
  const method = client.token_endpoint_auth_method ?? 'client_secret_basic';
  // oidc-provider itself accepts client_secret_basic and client_secret_post
  // interchangeably for a client registered with either; by default this
  // server insists on the registered one (see the /token middleware below).
  clientAuthPolicy.set(client.client_id, {
    method,
    strict: client.strict_auth_method ?? true,
  });
  const metadata = {
    client_id: client.client_id,
    redirect_uris: client.redirect_uris ?? [],
    post_logout_redirect_uris: client.post_logout_redirect_uris ?? [],
    grant_types: client.grant_types ?? ['authorization_code', 'refresh_token'],
    response_types: client.response_types ?? ['code'],
    token_endpoint_auth_method: method,
    id_token_signed_response_alg: SIGNING_ALG,
  };
  if (method !== 'none') {
    if (typeof client.client_secret !== 'string' || !client.client_secret) {
      throw new Error(`client ${client.client_id} needs a client_secret for ${method}`);
    }
    metadata.client_secret = client.client_secret;
  }
  return metadata;
}

let staticClients;
try {
  staticClients = (config.clients ?? []).map(clientMetadata);
} catch (err) {
  fail(err.message);
}

// ---------------------------------------------------------------- keys

// The published signing key, and a second key carrying the same kid that is
// never published (used by the bad_signature mode).
const { privateKey: realPrivate } = await jose.generateKeyPair(SIGNING_ALG, { extractable: true });
const { privateKey: roguePrivate } = await jose.generateKeyPair(SIGNING_ALG, { extractable: true });
const realJwk = {
  ...(await jose.exportJWK(realPrivate)), kid: SIGNING_KID, use: 'sig', alg: SIGNING_ALG,
};

// ---------------------------------------------------------------- provider

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', () => {
    server.off('error', reject);
    resolve();
  });
});
const boundPort = server.address().port;
const origin = `http://127.0.0.1:${boundPort}`;
const issuer = `${origin}${issuerPath}`;

const CLAIMS = {
  openid: ['sub'],
  email: ['email', 'email_verified'],
  profile: ['name', 'given_name', 'family_name', 'preferred_username', 'picture'],
};
const ALL_CLAIMS = Object.values(CLAIMS).flat();

const provider = new Provider(issuer, {
  clients: staticClients,
  jwks: { keys: [realJwk] },
  clientAuthMethods: config.client_auth_methods ?? ['client_secret_basic', 'client_secret_post', 'none'],
  scopes: ['openid', 'email', 'profile', 'offline_access'],
  claims: CLAIMS,
  // Put the scope-derived claims (email, name, ...) in the ID token as well,
  // not only in the userinfo response.
  conformIdTokenClaims: false,
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: false },
    userinfo: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  interactions: {
    url(ctx, interaction) {
      return `${issuerPath}/interaction/${interaction.uid}`;
    },
  },
  async findAccount(ctx, sub) {
    const account = accounts.get(sub);
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() {
        const claims = { sub };
        for (const name of ALL_CLAIMS) {
          if (account[name] !== undefined && account[name] !== null) claims[name] = account[name];
        }
        if (claims.email !== undefined && claims.email_verified === undefined) {
          claims.email_verified = false;
        }
        return claims;
      },
    };
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<h1>Error</h1>
<p id="error-code">${esc(out.error)}</p>
<p id="error-description">${esc(out.error_description ?? '')}</p>`);
  },
});

// Validate static client metadata now; the provider would otherwise only do it
// on first use, turning a config mistake into an obscure runtime error.
for (const metadata of staticClients) {
  try {
    await provider.Client.find(metadata.client_id);
  } catch (err) {
    fail(`invalid client ${metadata.client_id}: ${err.message} ${err.error_description ?? ''}`);
  }
}

// ---------------------------------------------------------------- helpers

function esc(value) {
  return String(value)
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body>
${body}
</body></html>`;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function isLoopback(address) {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1';
}

// ---------------------------------------------------------------- interactions

function loginPage({ uid, clientId, error, login }) {
  const action = `${issuerPath}/interaction/${esc(uid)}`;
  return page('Sign in', `<h1>Sign in</h1>
<p>to continue to <span id="client-id">${esc(clientId)}</span></p>
${error ? `<p id="error" class="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="${action}" autocomplete="off">
  <p><label for="login">Email or user id</label>
  <input id="login" name="login" type="text" value="${esc(login ?? '')}" autofocus required></p>
  <p><label for="password">Password</label>
  <input id="password" name="password" type="password" required></p>
  <p><button id="submit" type="submit">Sign in</button></p>
</form>
<p><a id="cancel" href="${action}/abort">Cancel</a></p>`);
}

// Creates (or extends) the grant for everything the client asked for:
// consent is given automatically.
async function autoConsent(details, accountId) {
  const { Grant } = provider;
  let grant;
  if (details.grantId) grant = await Grant.find(details.grantId);
  if (!grant) grant = new Grant({ accountId, clientId: details.params.client_id });
  if (details.params.scope) grant.addOIDCScope(details.params.scope);
  const missing = details.prompt?.details ?? {};
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(resource, scopes.join(' '));
  }
  return grant.save();
}

function html(ctx, status, body) {
  ctx.set('Cache-Control', 'no-store');
  ctx.status = status;
  ctx.type = 'html';
  ctx.body = body;
}

provider.use(async (ctx, next) => {
  const match = /^\/interaction\/([^/]+)(\/abort)?\/?$/.exec(ctx.path);
  if (!match) return next();
  const [, uid, abort] = match;

  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    html(ctx, 400, page('Error', `<h1>Error</h1><p id="error" role="alert">${esc(err.message)}</p>`));
    return undefined;
  }
  if (details.uid !== uid) {
    html(ctx, 400, page('Error', '<h1>Error</h1><p id="error" role="alert">interaction mismatch</p>'));
    return undefined;
  }

  const finish = async (result) => {
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
      mergeWithLastSubmission: false,
    });
    ctx.set('Cache-Control', 'no-store');
    ctx.redirect(returnTo);
    ctx.status = 303;
  };

  if (abort) {
    return finish({ error: 'access_denied', error_description: 'End-User aborted interaction' });
  }

  const clientId = details.params.client_id;
  const promptName = details.prompt.name;

  if (promptName === 'consent') {
    // Already signed in here: consent is automatic.
    const grantId = await autoConsent(details, details.session.accountId);
    return finish({ consent: { grantId } });
  }
  if (promptName !== 'login') {
    html(ctx, 501, page('Error', `<h1>Error</h1><p id="error">unsupported prompt ${esc(promptName)}</p>`));
    return undefined;
  }

  if (ctx.method === 'GET') {
    html(ctx, 200, loginPage({ uid, clientId }));
    return undefined;
  }
  if (ctx.method !== 'POST') {
    ctx.status = 405;
    return undefined;
  }

  const form = new URLSearchParams(await readBody(ctx.req));
  const login = form.get('login');
  const account = findAccountByLogin(login);
  if (!account || typeof account.password !== 'string' || account.password !== form.get('password')) {
    debug('login failed for', JSON.stringify(login));
    html(ctx, 200, loginPage({
      uid, clientId, login, error: 'Invalid login or password.',
    }));
    return undefined;
  }
  const grantId = await autoConsent(details, account.sub);
  return finish({
    login: { accountId: account.sub },
    consent: { grantId },
  });
});

// ---------------------------------------------------------------- token post-processing

const tokenLog = [];

async function tamperIdToken(idToken) {
  const header = jose.decodeProtectedHeader(idToken);
  const payload = jose.decodeJwt(idToken);
  let key = realPrivate;
  if (mode === 'wrong_audience') {
    payload.aud = WRONG_AUDIENCE;
    delete payload.azp;
  } else if (mode === 'wrong_issuer') {
    payload.iss = WRONG_ISSUER;
  } else if (mode === 'bad_signature') {
    key = roguePrivate;
  }
  return new jose.SignJWT(payload).setProtectedHeader(header).sign(key);
}

function decodeBasicClientId(authorization) {
  const [scheme, value] = String(authorization ?? '').split(' ');
  if (scheme?.toLowerCase() !== 'basic' || !value) return undefined;
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i === -1) return undefined;
  try {
    return decodeURIComponent(decoded.slice(0, i).replaceAll('+', '%20'));
  } catch {
    return undefined;
  }
}

// Rejects a client that authenticates with the other one of
// client_secret_basic / client_secret_post than the one it is registered with.
// Returns the log entry of a rejected request, undefined otherwise.
async function enforceClientAuthMethod(ctx) {
  if (!ctx.is('application/x-www-form-urlencoded')) return undefined;
  const raw = await readBody(ctx.req);
  // oidc-provider reads an already consumed body from req.body.
  ctx.req.body = raw;
  const form = new URLSearchParams(raw);
  const usedBasic = ctx.get('authorization').toLowerCase().startsWith('basic ');
  const usedPost = form.has('client_secret');
  if (usedBasic === usedPost) return undefined; // neither or both: the provider decides
  const clientId = usedBasic ? decodeBasicClientId(ctx.get('authorization')) : form.get('client_id');
  const policy = clientAuthPolicy.get(clientId);
  if (!policy?.strict) return undefined;
  const used = usedBasic ? 'client_secret_basic' : 'client_secret_post';
  if (!['client_secret_basic', 'client_secret_post'].includes(policy.method) || policy.method === used) {
    return undefined;
  }
  const description = `client ${clientId} is registered for ${policy.method} but authenticated with ${used}`;
  ctx.status = 401;
  if (usedBasic) ctx.set('WWW-Authenticate', 'Basic realm="token"');
  ctx.set('Cache-Control', 'no-store');
  ctx.body = { error: 'invalid_client', error_description: description };
  return {
    client_id: clientId,
    client_auth: usedBasic ? 'basic' : 'body',
    grant_type: form.get('grant_type'),
    status: 401,
    error: 'invalid_client',
    error_description: description,
    code_verifier_sent: form.has('code_verifier'),
  };
}

provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || ctx.path !== '/token') return next();

  const rejected = await enforceClientAuthMethod(ctx);
  if (rejected) {
    tokenLog.push({
      time: new Date().toISOString(), mode, nonce: null, sub: null, ...rejected,
    });
    process.stderr.write(`oidc test server: ${rejected.error_description}\n`);
    return;
  }

  await next();

  const params = ctx.oidc?.params ?? {};
  const entry = {
    time: new Date().toISOString(),
    client_id: ctx.oidc?.client?.clientId ?? params.client_id ?? null,
    client_auth: ctx.get('authorization').toLowerCase().startsWith('basic ') ? 'basic' : 'body',
    grant_type: params.grant_type ?? null,
    status: ctx.status,
    error: null,
    mode,
    nonce: null,
    sub: null,
    code_verifier_sent: Boolean(params.code_verifier),
  };
  const body = ctx.body && typeof ctx.body === 'object' && !Buffer.isBuffer(ctx.body) ? ctx.body : null;
  if (ctx.status !== 200) {
    entry.error = body?.error ?? 'error';
    entry.error_description = body?.error_description ?? null;
  } else if (body?.id_token) {
    try {
      const claims = jose.decodeJwt(body.id_token);
      entry.nonce = claims.nonce ?? null;
      entry.sub = claims.sub ?? null;
      if (mode !== 'normal') {
        body.id_token = await tamperIdToken(body.id_token);
      }
    } catch (err) {
      process.stderr.write(`oidc test server: id_token post-processing failed: ${err.stack}\n`);
    }
  }
  tokenLog.push(entry);
  debug('token request', JSON.stringify(entry));
});

// ---------------------------------------------------------------- control endpoints

function sendJson(res, status, value) {
  const data = JSON.stringify(value);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(data),
    'Cache-Control': 'no-store',
  });
  res.end(data);
}

async function control(req, res, path) {
  if (!isLoopback(req.socket.remoteAddress)) {
    sendJson(res, 403, { error: 'forbidden' });
    return;
  }
  let body = {};
  if (req.method === 'POST') {
    const text = await readBody(req);
    try {
      body = text ? JSON.parse(text) : {};
    } catch {
      sendJson(res, 400, { error: 'invalid JSON' });
      return;
    }
  }
  const route = `${req.method} ${path}`;
  switch (route) {
    case 'GET /__control/mode':
      sendJson(res, 200, { mode });
      return;
    case 'POST /__control/mode':
      if (!MODES.has(body.mode)) {
        sendJson(res, 400, { error: `unknown mode ${JSON.stringify(body.mode)}`, modes: [...MODES] });
        return;
      }
      mode = body.mode;
      sendJson(res, 200, { mode });
      return;
    case 'GET /__control/log':
      sendJson(res, 200, { token_requests: tokenLog });
      return;
    case 'POST /__control/log/clear':
      tokenLog.length = 0;
      sendJson(res, 200, { token_requests: tokenLog });
      return;
    case 'POST /__control/accounts':
      try {
        addAccount(body);
      } catch (err) {
        sendJson(res, 400, { error: err.message });
        return;
      }
      sendJson(res, 200, { sub: body.sub });
      return;
    case 'POST /__control/clients': {
      let metadata;
      try {
        metadata = clientMetadata(body);
        if (staticClients.some((c) => c.client_id === metadata.client_id)) {
          throw new Error(`client ${metadata.client_id} is configured statically`);
        }
        await provider.Client.adapter.upsert(metadata.client_id, metadata);
        await provider.Client.find(metadata.client_id);
      } catch (err) {
        if (metadata) await provider.Client.adapter.destroy(metadata.client_id);
        sendJson(res, 400, { error: `${err.message} ${err.error_description ?? ''}`.trim() });
        return;
      }
      sendJson(res, 200, { client_id: metadata.client_id });
      return;
    }
    default:
      sendJson(res, 404, { error: `no route ${route}` });
  }
}

// ---------------------------------------------------------------- HTTP plumbing

const providerCallback = provider.callback();

server.on('request', (req, res) => {
  const url = req.url ?? '/';
  const path = url.split('?')[0];
  debug(req.method, url);
  if (path.startsWith('/__control/')) {
    control(req, res, path).catch((err) => {
      process.stderr.write(`oidc test server: control error: ${err.stack}\n`);
      if (!res.headersSent) sendJson(res, 500, { error: err.message });
    });
    return;
  }
  if (issuerPath) {
    if (path !== issuerPath && !path.startsWith(`${issuerPath}/`)) {
      sendJson(res, 404, { error: 'not found' });
      return;
    }
    // Mount the provider below issuer_path; oidc-provider derives the mount
    // path from req.originalUrl vs req.url.
    req.originalUrl = url;
    req.url = url.slice(issuerPath.length) || '/';
    if (req.url.startsWith('?')) req.url = `/${req.url}`;
  }
  providerCallback(req, res);
});

function shutdown(code) {
  server.close();
  server.closeAllConnections?.();
  process.exit(code);
}

process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
if (!process.env.OIDC_TEST_IGNORE_STDIN) {
  process.stdin.on('end', () => shutdown(0));
  process.stdin.on('close', () => shutdown(0));
  process.stdin.on('error', () => shutdown(0));
  process.stdin.resume();
}

process.stdout.write(`${JSON.stringify({ ready: true, issuer, port: boundPort })}\n`);
