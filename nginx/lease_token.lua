-- Lease tokens checked inside nginx (AUTHSVC_LEASE_TOKEN_S). The format and the key are
-- authsvc/leasetoken.py's: <expiry, unix seconds>.<base64url HMAC-SHA256 of
-- "identity\nstream\nexpiry"> (in jwt mode ".<subject>" follows, and the MAC is of
-- "identity\nstream\nsubject\nexpiry"), under the hex key derived from AUTHSVC_SECRET that
-- nginx gets as CANWATCH_EDGE_LEASE_TOKEN_KEY.
--
-- HMAC-SHA256 through LuaJIT's FFI on the libcrypto nginx is linked with. The key is one
-- SHA-256 block, so its inner and outer states are hashed once per nginx (init) and copied
-- for each check: a check then hashes the message and one digest. OpenSSL's one-shot HMAC()
-- would look the digest up and key a context on every call.
local ffi = require "ffi"
local bit = require "bit"
local base64 = require "ngx.base64"

local byte, sub = string.byte, string.sub
local bor, bxor = bit.bor, bit.bxor
local now = ngx.now

ffi.cdef [[
typedef struct { uint32_t h[8]; uint32_t Nl, Nh; uint32_t data[16]; unsigned int num, md_len; } SHA256_CTX;
int SHA256_Init(SHA256_CTX *c);
int SHA256_Update(SHA256_CTX *c, const void *data, size_t len);
int SHA256_Final(unsigned char *md, SHA256_CTX *c);
]]

-- nginx's own libcrypto when its symbols are global (Debian's nginx, OpenResty), else loaded.
local crypto = ffi.C
if not pcall(function() return crypto.SHA256_Init end) then
    crypto = ffi.load("crypto")
end

local CTX_SIZE = ffi.sizeof("SHA256_CTX")
local inner, outer = ffi.new("SHA256_CTX[1]"), ffi.new("SHA256_CTX[1]")
local work, digest = ffi.new("SHA256_CTX[1]"), ffi.new("unsigned char[32]")
local keyed, lifetime = false, 0

local M = {}

-- Once, from init_by_lua: the key (64 hex characters, used as they are, like authsvc does)
-- and the tokens' lifetime in seconds. Without a key every token is refused.
function M.init(key, lifetime_s)
    lifetime = lifetime_s
    keyed = false
    if not key or #key == 0 or #key > 64 then
        return
    end
    local ipad, opad = ffi.new("unsigned char[64]"), ffi.new("unsigned char[64]")
    for i = 0, 63 do
        local k = byte(key, i + 1) or 0
        ipad[i] = bxor(k, 0x36)
        opad[i] = bxor(k, 0x5c)
    end
    crypto.SHA256_Init(inner)
    crypto.SHA256_Update(inner, ipad, 64)
    crypto.SHA256_Init(outer)
    crypto.SHA256_Update(outer, opad, 64)
    keyed = true
end

-- The raw 32-byte HMAC-SHA256 of message.
function M.mac(message)
    ffi.copy(work, inner, CTX_SIZE)
    crypto.SHA256_Update(work, message, #message)
    crypto.SHA256_Final(digest, work)
    ffi.copy(work, outer, CTX_SIZE)
    crypto.SHA256_Update(work, digest, 32)
    crypto.SHA256_Final(digest, work)
    return ffi.string(digest, 32)
end

-- "1" when claim, "<message>\n<mac>" as part-http-lease-token.conf builds it (nginx has checked
-- its shape: the message ends in the 10-digit expiry, the MAC has 43 characters), holds a
-- token valid now; else "". A token that claims to outlive its lifetime is not authsvc's.
function M.valid(claim)
    if not keyed or not claim or claim == "" then
        return ""
    end
    local n = #claim
    local expiry = tonumber(sub(claim, n - 53, n - 44))
    local t = now()
    if not expiry or expiry < t or expiry > t + lifetime + 1 then
        return ""
    end
    local given = base64.decode_base64url(sub(claim, n - 42))
    if not given or #given ~= 32 then
        return ""
    end
    local mac = M.mac(sub(claim, 1, n - 44))
    -- Every byte compared, whatever differs: the time taken tells nothing of where.
    local diff = 0
    for i = 1, 32 do
        diff = bor(diff, bxor(byte(mac, i), byte(given, i)))
    end
    return diff == 0 and "1" or ""
end

return M
