-- set_by_lua_file's script (gate-lease-token.conf): ngx.arg[1] is the claim,
-- "<identity>\n<stream>\n<cw_lease cookie>", handed over by nginx as an argument, which
-- costs less than reading its parts from Lua (ngx.var). The answer is the user a valid
-- token names, else "". An error (the module's loading included) must not become the
-- gate's 500: it counts as no valid token, and the fetch goes the exact way.
local ok, user = pcall(function()
    return require("lease_token").user(ngx.arg[1])
end)
return ok and user or ""
