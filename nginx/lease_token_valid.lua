-- set_by_lua_file's script (part-gate-lease-token.conf): ngx.arg[1] is $cw_lease_claim,
-- handed over by nginx as an argument, which costs less than reading it from Lua (ngx.var);
-- nil when it is empty. An error (the module's loading included) must not become the
-- gate's 500: it counts as no valid token, and the fetch goes the exact way.
local ok, valid = pcall(function()
    return require("lease_token").valid(ngx.arg[1])
end)
return ok and valid or ""
