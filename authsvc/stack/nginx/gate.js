// Lease tokens checked inside nginx (AUTHSVC_GATE_TOKEN_S): $cw_lease_valid is "1" when the
// player's cw_lease cookie is a valid token for this identity, this stream and now; the
// gate then serves the fetch without asking authsvc. Anything else goes the exact way
// (auth_request to authsvc), which also issues a fresh token. The format and key are authsvc/gatetoken.py's:
//   <expiry, unix seconds>.<base64url HMAC-SHA256 of "identity\nstream\nexpiry">
// under the hex key derived from AUTHSVC_SECRET, given to nginx as CANWATCH_GATE_KEY.
import crypto from 'crypto';

const KEY = process.env.CANWATCH_GATE_KEY || '';
const EXPIRY = /^[0-9]{1,12}$/;
// authsvc issues tokens for AUTHSVC_GATE_TOKEN_S: one that claims longer is not its own.
const LIFETIME_S = {{gate_token_s}};

// Equal strings, in time that does not depend on where they differ.
function same(a, b) {
    if (a.length !== b.length) {
        return false;
    }
    let diff = 0;
    for (let i = 0; i < a.length; i++) {
        diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
    }
    return diff === 0;
}

function valid(r) {
    const token = r.variables.cookie_cw_lease || '';
    const identity = r.variables.cw_gate_identity || '';
    const stream = r.variables.cw_uri_stream || '';
    const dot = token.indexOf('.');
    if (!KEY || !identity || !stream || dot < 1) {
        return false;
    }
    const expiry = token.slice(0, dot);
    const now = Date.now() / 1000;
    if (!EXPIRY.test(expiry) || Number(expiry) < now || Number(expiry) > now + LIFETIME_S + 1) {
        return false;
    }
    const mac = crypto.createHmac('sha256', KEY)
        .update(identity + '\n' + stream + '\n' + expiry)
        .digest('base64url')
        .replace(/=+$/, '');
    return same(mac, token.slice(dot + 1));
}

function leaseValid(r) {
    return valid(r) ? '1' : '';
}

export default { leaseValid };
