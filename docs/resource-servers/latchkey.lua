-- Forward auth for HAProxy (2.5 or later, built with Lua; Debian's is): asks Latchkey about the
-- request with HAProxy's own HTTP client and leaves the answer in variables that haproxy.cfg
-- acts on. HAProxy has no auth_request of its own; this is the whole of the glue.
--
--   http-request lua.latchkey_auth http://LATCHKEY/v1/forward-auth?[requirements]
--
-- sets txn.latchkey_status (Latchkey's status, 0 when it did not answer), and on a 200 the
-- identity (txn.latchkey_principal, _principal_kind, _token_id, _accounts, _scopes,
-- _token_expires), else txn.latchkey_challenge (its WWW-Authenticate).

local identity = {
  "latchkey-principal", "latchkey-principal-kind", "latchkey-token-id",
  "latchkey-accounts", "latchkey-scopes", "latchkey-token-expires",
}

-- HAProxy's header tables hold each header's values from index 0.
local function first(values)
  if values == nil then return nil end
  return values[0] or values[1]
end

core.register_action("latchkey_auth", { "http-req" }, function(txn, url)
  -- Only the token and the client's address go to Latchkey: not the client's body, path or
  -- query (Latchkey reads the query as requirements).
  local headers = { ["x-forwarded-for"] = { txn.f:src() } }
  local authorization = first(txn.http:req_get_headers()["authorization"])
  if authorization ~= nil then
    headers["authorization"] = { authorization }
  end
  local res = core.httpclient():get({ url = url, headers = headers, timeout = 2000 })
  local status = (res and res.status) or 0
  txn:set_var("txn.latchkey_status", status)
  if res == nil or res.headers == nil then return end
  if status == 200 then
    for _, name in ipairs(identity) do
      local value = first(res.headers[name])
      if value ~= nil then
        txn:set_var("txn." .. name:gsub("-", "_"), value)
      end
    end
  else
    txn:set_var("txn.latchkey_challenge", first(res.headers["www-authenticate"]) or "Bearer")
  end
end, 1)
