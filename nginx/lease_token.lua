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
--
-- A player sends the same token with every fetch until it is renewed, so each worker
-- remembers the claims it has found valid (identity, stream and cookie, byte for byte)
-- with their expiry: a claim seen before costs a table lookup, not a MAC. The memory is
-- two generations of at most `cache_size` claims each: when the newer fills up, the older
-- is dropped, and a claim found in the older is carried over. Only valid claims are kept,
-- so what a client sends can fill it no faster than authsvc issues tokens.
local ffi = require "ffi"
local bit = require "bit"
local base64 = require "ngx.base64"

local byte, sub, find = string.byte, string.sub, string.find
local pairs = pairs
local bor, bxor = bit.bor, bit.bxor
local now, time = ngx.now, os.time

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
local keyed, lifetime, with_subject = false, 0, false

-- The cookie's shape: a 10-digit expiry, a dot and 43 base64url characters of MAC (which
-- decode_base64url refuses when any is not one), then in jwt mode a dot and the subject
-- (authsvc's user ids: at most 128 characters, none outside NOT_SUBJECT's set).
local EXPIRY_MAC = 54
local DOT = 46
local NOT_DIGIT = "%D"
local NOT_SUBJECT = "[^%w_.@:|+%-]"
local SUBJECT_MAX = 128

-- claim -> { expiry, user to log }
local fresh, aged, count, limit = {}, {}, 0, 0

local M = {}

-- LuaJIT compiles a function along the path it takes when it turns hot. Compiled along a
-- first sight's whole check, M.user leaves the path of a claim seen before (nearly every
-- fetch) to the interpreter: that path would need a side trace that returns below the
-- frame it started in, which LuaJIT 2.1 does not compile ("NYI: return to lower frame").
-- So the path of a claim seen before is taken first, here, until it is compiled, with a
-- claim no fetch can send (nginx's claim holds no NUL). The loop itself is not compiled:
-- a trace of it would take M.user in, and M.user would not be compiled on its own.
local function warm_up()
    local claim = "\0warm-up"
    fresh[claim] = { math.huge, "" }
    for _ = 1, 1000 do
        M.user(claim)
    end
    fresh[claim] = nil
end
jit.off(warm_up)

-- Once, from init_by_lua: the key (64 hex characters, used as they are, like authsvc does),
-- the tokens' lifetime in seconds, whether tokens end in the JWT's subject (jwt mode), and
-- how many valid claims a generation of the memory holds (0: none kept). Without a key
-- every token is refused.
function M.init(key, lifetime_s, jwt, cache_size)
    lifetime = lifetime_s
    with_subject = jwt and true or false
    limit = cache_size or 0
    fresh, aged, count = {}, {}, 0
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
    warm_up()
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

local function remember(claim, entry)
    if limit == 0 then
        return
    end
    if count >= limit then
        aged, fresh, count = fresh, {}, 0
    end
    fresh[claim] = entry
    count = count + 1
end

-- The whole check of claim, "<identity>\n<stream>\n<cookie>": { expiry, user } when the
-- cookie is a token for that identity and stream, valid now; else nil. A token that claims
-- to outlive its lifetime is not authsvc's.
local function check(claim)
    local first = find(claim, "\n", 1, true)
    local second = first and find(claim, "\n", first + 1, true)
    if not second or first == 1 or second == first + 1 then
        return nil -- no identity or no stream
    end
    local cookie = sub(claim, second + 1)
    local user
    if with_subject then
        user = sub(cookie, EXPIRY_MAC + 2)
        if byte(cookie, EXPIRY_MAC + 1) ~= DOT or #user == 0 or #user > SUBJECT_MAX then
            return nil
        end
        if find(user, NOT_SUBJECT) then
            return nil
        end
    else
        if #cookie ~= EXPIRY_MAC then
            return nil
        end
        user = sub(claim, 1, first - 1)
    end
    local expiry_text = sub(cookie, 1, 10)
    if byte(cookie, 11) ~= DOT or find(expiry_text, NOT_DIGIT) then
        return nil
    end
    local mac_text = sub(cookie, 12, EXPIRY_MAC)
    local expiry = tonumber(expiry_text)
    local t = now()
    if expiry < t or expiry > t + lifetime + 1 then
        return nil
    end
    local given = base64.decode_base64url(mac_text)
    -- The MAC's last character carries two spare bits, which decoding ignores: only the
    -- spelling authsvc writes is the token (as authsvc's own check takes it).
    if not given or #given ~= 32 or base64.encode_base64url(given) ~= mac_text then
        return nil
    end
    local message = sub(claim, 1, second)
    if with_subject then
        message = message .. user .. "\n"
    end
    local mac = M.mac(message .. expiry_text)
    -- Every byte compared, whatever differs: the time taken tells nothing of where.
    local diff = 0
    for i = 1, 32 do
        diff = bor(diff, bxor(byte(mac, i), byte(given, i)))
    end
    if diff ~= 0 then
        return nil
    end
    return { expiry, user }
end

-- The user to log when claim (see check) holds a token valid now, else "". A claim
-- remembered is valid while its expiry is still ahead in whole seconds (os.time, which
-- costs less here than ngx.now): never longer than the whole check allows.
function M.user(claim)
    if not keyed or not claim then
        return ""
    end
    local entry = fresh[claim]
    if entry == nil then
        entry = aged[claim] or check(claim)
        if entry == nil or entry[1] <= time() then
            return "" -- an expired claim is not carried over
        end
        remember(claim, entry)
    elseif entry[1] <= time() then
        return ""
    end
    return entry[2]
end

-- How many claims the newer and the older generation hold (tests/integration/
-- test_lease_token_lua.py reads it).
function M.remembered()
    local newer, older = 0, 0
    for _ in pairs(fresh) do
        newer = newer + 1
    end
    for _ in pairs(aged) do
        older = older + 1
    end
    return newer, older
end

return M
