// Lease tokens checked inside nginx (AUTHSVC_LEASE_TOKEN_S): $cw_lease_valid is "1" when the
// player's cw_lease cookie is a valid token for this identity, this stream and now; the
// gate then serves the fetch without asking authsvc. Anything else goes the exact way
// (auth_request to authsvc), which also issues a fresh token. The format and key are authsvc/leasetoken.py's:
//   <expiry, unix seconds>.<base64url HMAC-SHA256 of "identity\nstream\nexpiry">
// under the hex key derived from AUTHSVC_SECRET, given to nginx as CANWATCH_EDGE_LEASE_TOKEN_KEY.
// In jwt mode ".<subject>" follows, and the MAC is of "identity\nstream\nsubject\nexpiry".
import crypto from 'crypto';

const KEY = process.env.CANWATCH_EDGE_LEASE_TOKEN_KEY || '';
// authsvc issues tokens for AUTHSVC_LEASE_TOKEN_S: one that claims longer is not its own.
const LIFETIME_S = {{lease_token_s}};

// Every request runs this in a fresh njs VM, so it does as little as it can: nginx has
// already checked the token's shape and put the parts in $cw_lease_claim (lease-token-http.conf),
// "<identity>\n<stream>\n<expiry>\n<mac>" with a 10-digit expiry and a 43-character MAC
// (in jwt mode "<identity>\n<stream>\n<subject>\n<expiry>\n<mac>": the same code checks both).
function leaseValid(r) {
    const claim = r.variables.cw_lease_claim;
    if (!claim || !KEY) {
        return '';
    }
    const expiry = +claim.slice(-54, -44);
    const now = Date.now() / 1000;
    if (expiry < now || expiry > now + LIFETIME_S + 1) {
        return '';
    }
    // The message is everything before "\n<mac>".
    const mac = crypto.createHmac('sha256', KEY).update(claim.slice(0, -44)).digest('base64url');
    // === is njs_string_eq: a memcmp of the 43 bytes, which glibc compares 32 bytes at a
    // time, so its timing tells at most whether the first 32 bytes (192 bits) matched.
    // A loop that compared every byte in JavaScript cost 110,000 instructions a fetch here
    // (bench/instructions.py), against 139,000 for all of the fetch without it.
    return mac === claim.slice(-43) ? '1' : '';
}

export default { leaseValid };
