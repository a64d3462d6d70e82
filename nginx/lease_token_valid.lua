-- set_by_lua_file's script (lease-token-gate.conf): ngx.arg[1] is $cw_lease_claim, handed
-- over by nginx as an argument, which costs less than reading it from Lua (ngx.var); nil
-- when it is empty. An error must not become the gate's 500 (which fail-open would let
-- through): it counts as no valid token, and the fetch goes the exact way.
local ok, valid = pcall(require("lease_token").valid, ngx.arg[1])
return ok and valid or ""
