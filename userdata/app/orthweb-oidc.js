/*
 * Orthweb, login = "cognito": nginx believes only what it verified itself (docs/host.md, "Cognito
 * login: what nginx verifies"). The ALB authenticates each person with the Cognito user pool and
 * forwards three headers; any client could also send them, so each request is checked here:
 *   x-amzn-oidc-data         the ALB's JWT of the person's claims, ES256, signed by THIS load
 *                            balancer (header: kid, signer, iss, client, exp); key by kid from the
 *                            region's ALB public-key endpoint
 *   x-amzn-oidc-accesstoken  the pool's access token, RS256, key by kid from the pool's JWKS;
 *                            iss, client_id, token_use "access", exp; its groups give the role
 *   x-amzn-oidc-identity     the person's sub, which both tokens must name too
 * verify() answers nginx's auth_request: 204 with X-Orthweb-Role and X-Orthweb-Person, else 401
 * (nothing verified) or 403 (verified, but in no Orthweb group); X-Orthweb-Oidc says why, for the
 * access log. logout() ends the ALB session and sends the browser to Cognito's /logout.
 *
 * Runs on njs 0.7.9 (Debian 12) and 0.8.x (the official nginx image), so it avoids what 0.7.9
 * lacks: no let/const, destructuring or for-of; no JWK import (RSA keys are turned into SPKI DER
 * here); and no state between requests (0.7.9 gives each request its own VM): fetched keys are
 * cached by nginx's proxy_cache behind the internal /_orthweb_oidc/key location (nginx-cognito.conf).
 */
var fs = require('fs');

// The deployment's facts, written by orthweb-oidc on the host, relative to nginx's configuration
// directory (/etc/nginx/oidc/ in the container: a directory mount, so a rewrite is seen).
var CONFIG_PATH = 'oidc/oidc.json';
var CONFIG_KEYS = ['alb_arn', 'issuer', 'client_id', 'alb_keys_url', 'jwks_url', 'logout_url', 'logout_uri',
    'session_cookie'];
// Orthweb's groups, strongest first: a person in several gets the strongest.
var ROLES = ['admin', 'uploader', 'viewer'];
// A key endpoint's URL: it becomes an argument of nginx's internal key location, so nothing that
// could end or extend one ('&', '?', '%', '#').
var KEY_URL = /^https?:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?(\/[A-Za-z0-9._~\/-]*)?$/;
// One base64url segment. ALB pads its segments with '=' (its documentation says so); a strict
// check matters because njs's decoder skips characters it does not know instead of failing.
var SEGMENT = /^[A-Za-z0-9_-]+={0,2}$/;
// An ALB key id goes into the key endpoint's path: letters, digits and '-' only (a UUID).
var ALB_KID = /^[A-Za-z0-9-]{1,128}$/;
// What reaches the access log and Orthanc as the person: printable ASCII, no space or control.
var PERSON = /^[\x21-\x7e]{1,254}$/;
// Headers of the ALB's, and the prefix of Orthweb's own (only nginx may set those).
var DATA = 'x-amzn-oidc-data';
var ACCESS = 'x-amzn-oidc-accesstoken';
var IDENTITY = 'x-amzn-oidc-identity';
var OWN_PREFIX = 'x-orthweb-';

function Refusal(status, reason) {
    this.status = status;
    this.reason = reason;
}

function refuse(reason) {
    throw new Refusal(401, reason);
}

function config() {
    var cfg;
    try {
        cfg = JSON.parse(fs.readFileSync(ngx.conf_prefix + CONFIG_PATH));
    } catch (e) {
        throw new Refusal(500, 'config-unreadable');
    }
    for (var i = 0; i < CONFIG_KEYS.length; i++) {
        if (typeof cfg[CONFIG_KEYS[i]] !== 'string' || cfg[CONFIG_KEYS[i]] === '') {
            throw new Refusal(500, 'config-lacks-' + CONFIG_KEYS[i]);
        }
    }
    if (!KEY_URL.test(cfg.alb_keys_url) || !KEY_URL.test(cfg.jwks_url)) {
        throw new Refusal(500, 'config-key-url');
    }
    return cfg;
}

function b64url(segment, what) {
    if (!SEGMENT.test(segment)) {
        refuse(what + '-malformed');
    }
    return Buffer.from(segment.replace(/=+$/, ''), 'base64url');
}

function jsonObject(bytes, what) {
    var value;
    try {
        value = JSON.parse(bytes.toString());
    } catch (e) {
        refuse(what + '-malformed');
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        refuse(what + '-malformed');
    }
    return value;
}

// A compact JWS as {header, claims, signed (the bytes the signature covers), signature}. The
// signed input is the first two segments exactly as received, padding included.
function parse(token, what) {
    if (typeof token !== 'string' || token === '') {
        refuse(what + '-missing');
    }
    var parts = token.split('.');
    if (parts.length !== 3) {
        refuse(what + '-malformed');
    }
    return {
        header: jsonObject(b64url(parts[0], what), what),
        claims: jsonObject(b64url(parts[1], what), what),
        signed: Buffer.from(parts[0] + '.' + parts[1]),
        signature: b64url(parts[2], what)
    };
}

// exp as seconds since the epoch: a number, or (ALB's documentation shows a string) all digits.
function expired(exp) {
    var seconds = typeof exp === 'string' && /^[0-9]{1,12}$/.test(exp) ? Number(exp) : exp;
    if (typeof seconds !== 'number' || !isFinite(seconds)) {
        return true;
    }
    return Date.now() / 1000 >= seconds;
}

// DER, just enough for an RSA SubjectPublicKeyInfo (0.7.9 imports no JWK).
function derLength(length) {
    if (length < 128) {
        return Buffer.from([length]);
    }
    var bytes = [];
    while (length > 0) {
        bytes.unshift(length & 0xff);
        length = length >> 8;
    }
    return Buffer.from([0x80 | bytes.length].concat(bytes));
}

function der(tag, body) {
    return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

function derUnsigned(bytes) {
    var start = 0;
    while (start < bytes.length - 1 && bytes[start] === 0) {
        start++;
    }
    var value = bytes.slice(start);
    if (value[0] & 0x80) {
        value = Buffer.concat([Buffer.from([0]), value]);
    }
    return der(0x02, value);
}

// AlgorithmIdentifier rsaEncryption (1.2.840.113549.1.1.1) with NULL parameters.
var RSA_ENCRYPTION = Buffer.from('300d06092a864886f70d0101010500', 'hex');

function rsaSpki(n, e) {
    var key = der(0x30, Buffer.concat([derUnsigned(n), derUnsigned(e)]));
    return der(0x30, Buffer.concat([RSA_ENCRYPTION, der(0x03, Buffer.concat([Buffer.from([0]), key]))]));
}

// A key fetched through nginx (cached there; nginx-cognito.conf): its body, or a refusal. The URL
// travels as the internal location's argument.
async function fetchKey(r, url) {
    var reply = await r.subrequest('/_orthweb_oidc/key', {args: 'url=' + url});
    if (reply.status === 200) {
        return reply.responseText;
    }
    if (reply.status === 403 || reply.status === 404) {
        refuse('unknown-key');
    }
    throw new Refusal(500, 'key-endpoint-' + reply.status);
}

// The ALB's public key, from its PEM.
function albKey(pem) {
    var body = pem.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, '').replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) {
        throw new Refusal(500, 'alb-key-unreadable');
    }
    return crypto.subtle.importKey('spki', Buffer.from(body, 'base64'), {name: 'ECDSA', namedCurve: 'P-256'},
        false, ['verify']);
}

// The pool's public key with id kid, from its JWKS.
function poolKey(text, kid) {
    var jwks;
    try {
        jwks = JSON.parse(text);
    } catch (e) {
        throw new Refusal(500, 'jwks-unreadable');
    }
    var keys = jwks && Array.isArray(jwks.keys) ? jwks.keys : [];
    for (var i = 0; i < keys.length; i++) {
        var k = keys[i];
        if (k && k.kid === kid && k.kty === 'RSA' && (k.alg === undefined || k.alg === 'RS256')
            && (k.use === undefined || k.use === 'sig') && typeof k.n === 'string' && typeof k.e === 'string') {
            return crypto.subtle.importKey('spki', rsaSpki(b64url(k.n, 'jwks'), b64url(k.e, 'jwks')),
                {name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256'}, false, ['verify']);
        }
    }
    refuse('unknown-key');
}

// The ALB's claims, before their signature is checked: from this load balancer, for this pool's
// client, not expired.
function dataClaims(cfg, token) {
    var jwt = parse(token, 'data');
    var h = jwt.header;
    if (h.alg !== 'ES256') {
        refuse('data-alg');
    }
    if (h.signer !== cfg.alb_arn) {
        refuse('data-signer');
    }
    if (h.iss !== cfg.issuer) {
        refuse('data-issuer');
    }
    if (h.client !== cfg.client_id) {
        refuse('data-client');
    }
    if (expired(h.exp)) {
        refuse('data-expired');
    }
    if (typeof h.kid !== 'string' || !ALB_KID.test(h.kid)) {
        refuse('data-kid');
    }
    // ES256 signatures are r and s, 32 bytes each (JWS's form, which WebCrypto's ECDSA takes).
    if (jwt.signature.length !== 64) {
        refuse('data-signature');
    }
    if (typeof jwt.claims.sub !== 'string' || jwt.claims.sub === '') {
        refuse('data-sub');
    }
    return jwt;
}

// The pool's access token, before its signature is checked: from this pool, issued to this
// client, an access token, not expired.
function accessClaims(cfg, token) {
    var jwt = parse(token, 'access');
    var h = jwt.header;
    var c = jwt.claims;
    if (h.alg !== 'RS256') {
        refuse('access-alg');
    }
    if (typeof h.kid !== 'string' || h.kid === '') {
        refuse('access-kid');
    }
    if (c.iss !== cfg.issuer) {
        refuse('access-issuer');
    }
    if (c.client_id !== cfg.client_id) {
        refuse('access-client');
    }
    if (c.token_use !== 'access') {
        refuse('access-token-use');
    }
    if (expired(c.exp)) {
        refuse('access-expired');
    }
    return jwt;
}

function roleOf(groups) {
    if (!Array.isArray(groups)) {
        return null;
    }
    for (var i = 0; i < ROLES.length; i++) {
        if (groups.indexOf(ROLES[i]) >= 0) {
            return ROLES[i];
        }
    }
    return null;
}

function personOf(data, access) {
    var candidates = [data.email, access.username, data.username];
    for (var i = 0; i < candidates.length; i++) {
        if (typeof candidates[i] === 'string' && PERSON.test(candidates[i])) {
            return candidates[i];
        }
    }
    refuse('person');
}

function header(r, name) {
    var value = r.headersIn[name];
    return typeof value === 'string' ? value : '';
}

async function check(r) {
    var names = Object.keys(r.headersIn);
    for (var i = 0; i < names.length; i++) {
        if (names[i].toLowerCase().indexOf(OWN_PREFIX) === 0) {
            throw new Refusal(403, 'client-sent-' + names[i].toLowerCase());
        }
    }
    var cfg = config();
    var data = dataClaims(cfg, header(r, DATA));
    var access = accessClaims(cfg, header(r, ACCESS));
    // One person: the identity header, the ALB's claims and the access token name the same sub.
    if (header(r, IDENTITY) !== data.claims.sub) {
        refuse('identity-mismatch');
    }
    if (access.claims.sub !== data.claims.sub) {
        refuse('access-sub-mismatch');
    }
    // Both keys first, then the signatures: on njs 0.7.9 a subrequest made after a WebCrypto
    // call of the same handler crashes the worker.
    var pem = await fetchKey(r, cfg.alb_keys_url + '/' + data.header.kid);
    var jwks = await fetchKey(r, cfg.jwks_url);
    var signer = await albKey(pem);
    if (!(await crypto.subtle.verify({name: 'ECDSA', hash: 'SHA-256'}, signer, data.signature, data.signed))) {
        refuse('data-signature');
    }
    var pool = await poolKey(jwks, access.header.kid);
    if (!(await crypto.subtle.verify({name: 'RSASSA-PKCS1-v1_5'}, pool, access.signature, access.signed))) {
        refuse('access-signature');
    }
    var role = roleOf(access.claims['cognito:groups']);
    if (role === null) {
        throw new Refusal(403, 'no-orthweb-group');
    }
    return {role: role, person: personOf(data.claims, access.claims)};
}

async function verify(r) {
    try {
        var who = await check(r);
        r.headersOut['X-Orthweb-Role'] = who.role;
        r.headersOut['X-Orthweb-Person'] = who.person;
        r.headersOut['X-Orthweb-Oidc'] = 'ok';
        r.return(204);
    } catch (e) {
        var refusal = e instanceof Refusal ? e : new Refusal(500, 'error');
        if (!(e instanceof Refusal)) {
            r.error('orthweb-oidc: ' + e);
        }
        r.headersOut['X-Orthweb-Oidc'] = refusal.reason;
        r.return(refusal.status);
    }
}

// The ALB's session cookie shards (NAME-0, NAME-1, ...) this request carries, and the first four
// in any case (the ALB shards at 4 KB and refuses more than about 11 KB of claims and token).
function sessionCookies(r, name) {
    var found = {};
    for (var n = 0; n < 4; n++) {
        found[name + '-' + n] = true;
    }
    var cookies = header(r, 'cookie').split(';');
    for (var i = 0; i < cookies.length; i++) {
        var cookie = cookies[i].split('=')[0].trim();
        if (cookie.indexOf(name + '-') === 0 && /^[0-9]{1,2}$/.test(cookie.slice(name.length + 1))) {
            found[cookie] = true;
        }
    }
    return Object.keys(found);
}

// Ends both sessions: the ALB's (its cookies expired, as its documentation asks) and Cognito's
// (its /logout endpoint, which then sends the browser to logout_uri, a sign-out URL of the client).
function logout(r) {
    try {
        var cfg = config();
        r.headersOut['Set-Cookie'] = sessionCookies(r, cfg.session_cookie).map(function (name) {
            return name + '=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=-1; Secure; HttpOnly';
        });
        r.headersOut['Cache-Control'] = 'no-store';
        r.return(302, cfg.logout_url + '?client_id=' + encodeURIComponent(cfg.client_id) + '&logout_uri='
            + encodeURIComponent(cfg.logout_uri));
    } catch (e) {
        r.error('orthweb-oidc: logout: ' + (e instanceof Refusal ? e.reason : e));
        r.return(500);
    }
}

export default {verify: verify, logout: logout};
