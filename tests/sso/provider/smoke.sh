#!/usr/bin/env bash
# Smoke test of the OpenID provider fixture (server.js) without Latchkey: discovery, a whole
# authorization code + PKCE sign-in with curl, the token request, the ID token's claims,
# silent sign-in on an existing provider session, re-authentication on max_age=0 and on
# prompt=login, and an unverified email.
#
#   tests/sso/provider/smoke.sh DIR    # DIR holds server.js and its node_modules
#                                      # (scripts/test installs it in target/test-sso-provider)
#
# Needs node, curl and python3. Starts the provider on a free loopback port and stops it on exit.
# Nothing is sent to the redirect URI (port 9 on the loopback interface): the script stops at
# the redirect to it.
set -euo pipefail

dir="${1:?usage: smoke.sh DIR (the directory with server.js and node_modules)}"
[ -f "$dir/server.js" ] || { echo "no server.js in $dir" >&2; exit 1; }
[ -d "$dir/node_modules/oidc-provider" ] || { echo "oidc-provider is not installed in $dir (npm ci)" >&2; exit 1; }

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; if [ -s "$work/stderr" ]; then echo "--- provider stderr:" >&2; cat "$work/stderr" >&2; fi; exit 1; }
ok() { echo "ok: $*"; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
issuer="http://127.0.0.1:$port"
client_id=latchkey
client_secret=s3cret
redirect_uri=http://127.0.0.1:9/sso/callback

PORT=$port CLIENT_ID=$client_id CLIENT_SECRET=$client_secret REDIRECT_URI=$redirect_uri \
  node "$dir/server.js" >"$work/stdout" 2>"$work/stderr" &
pid=$!
for _ in $(seq 1 100); do
  [ -s "$work/stdout" ] && break
  kill -0 "$pid" 2>/dev/null || fail "the provider exited"
  sleep 0.1
done
[ "$(cat "$work/stdout")" = "listening on $issuer" ] || fail "stdout is not exactly 'listening on $issuer': $(cat "$work/stdout")"
ok "provider started: $(cat "$work/stdout")"

# JSON field of a file: json FILE KEY
json() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
# URL-encodes one value.
urlenc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
# A query parameter of a URL: qparam URL NAME (empty when absent).
qparam() { python3 -c 'import sys, urllib.parse as u; print(u.parse_qs(u.urlsplit(sys.argv[1]).query).get(sys.argv[2], [""])[0])' "$1" "$2"; }

# One request without following redirects; sets $status, $location; the body is in $work/body.
# hop JAR URL [curl args...]
hop() {
  local jar=$1 url=$2
  shift 2
  local out
  out=$(curl -sS -o "$work/body" -c "$jar" -b "$jar" -w '%{http_code} %{redirect_url}' "$@" "$url") || fail "curl $url"
  status=${out%% *}
  location=${out#* }
  location=${location# }
}

# Discovery.
curl -sSf "$issuer/.well-known/openid-configuration" -o "$work/discovery.json" || fail "discovery"
[ "$(json "$work/discovery.json" issuer)" = "$issuer" ] || fail "issuer"
auth_endpoint=$(json "$work/discovery.json" authorization_endpoint)
token_endpoint=$(json "$work/discovery.json" token_endpoint)
jwks_uri=$(json "$work/discovery.json" jwks_uri)
[ "$auth_endpoint" = "$issuer/auth" ] || fail "authorization_endpoint $auth_endpoint"
[ "$token_endpoint" = "$issuer/token" ] || fail "token_endpoint $token_endpoint"
[ "$jwks_uri" = "$issuer/jwks" ] || fail "jwks_uri $jwks_uri"
curl -sSf "$jwks_uri" -o "$work/jwks.json" || fail "jwks"
python3 - "$work/jwks.json" <<'EOF' || fail "jwks has no RS256 signing key"
import json, sys
keys = json.load(open(sys.argv[1]))["keys"]
assert any(k["kty"] == "RSA" and k.get("alg") == "RS256" and "d" not in k for k in keys), keys
EOF
ok "discovery: issuer $issuer, $auth_endpoint, $token_endpoint, $jwks_uri"

# Starts an authorization request (PKCE S256, fresh state and nonce); sets $state, $nonce,
# $verifier, and $status/$location of the first response.
# authorize JAR [extra query string]
authorize() {
  local jar=$1 extra=${2:-}
  verifier=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
  local challenge
  challenge=$(python3 -c 'import base64, hashlib, sys; print(base64.urlsafe_b64encode(hashlib.sha256(sys.argv[1].encode()).digest()).rstrip(b"=").decode())' "$verifier")
  state=$(python3 -c 'import secrets; print(secrets.token_urlsafe(16))')
  nonce=$(python3 -c 'import secrets; print(secrets.token_urlsafe(16))')
  local url="$auth_endpoint?response_type=code&client_id=$client_id&redirect_uri=$(urlenc "$redirect_uri")&scope=$(urlenc 'openid email profile')&state=$state&nonce=$nonce&code_challenge=$challenge&code_challenge_method=S256"
  [ -n "$extra" ] && url="$url&$extra"
  hop "$jar" "$url"
}

# Follows the provider's redirects from the current $location until it leaves the provider;
# counts them in $redirects. Stops on a page (200), e.g. the login form.
follow() {
  local jar=$1
  while [ "$status" = 302 ] || [ "$status" = 303 ]; do
    case "$location" in
      "$issuer"/*) redirects=$((redirects + 1)); hop "$jar" "$location" ;;
      *) redirects=$((redirects + 1)); return 0 ;;
    esac
  done
}

# The login form in $work/body: sets $form_action and checks the fields.
read_login_form() {
  form_action=$(python3 - "$work/body" <<'EOF'
import html, re, sys
page = open(sys.argv[1]).read()
m = re.search(r'<form[^>]*action="([^"]+)"[^>]*method="post"', page)
assert m, "no form"
names = re.findall(r'<input[^>]*name="([^"]+)"', page)
assert names == ["prompt", "login", "password"], names
assert 'name="prompt" value="login"' in page
print(html.unescape(m.group(1)))
EOF
  ) || fail "no login form in the page: $(head -c 400 "$work/body")"
  case "$form_action" in
    "$issuer"/interaction/*) ;;
    *) fail "login form action $form_action" ;;
  esac
}

# Submits the login form; then follows back to the redirect URI; sets $code.
# login JAR LOGIN
login() {
  local jar=$1 who=$2
  read_login_form
  hop "$jar" "$form_action" --data-urlencode prompt=login --data-urlencode "login=$who" --data-urlencode password=x
  follow "$jar"
  back_at_client
}

# Checks that $location is the redirect URI with the code and our state; sets $code.
back_at_client() {
  case "$location" in
    "$redirect_uri"\?*) ;;
    *) fail "expected a redirect to $redirect_uri, got status $status location '$location': $(head -c 400 "$work/body")" ;;
  esac
  [ "$(qparam "$location" state)" = "$state" ] || fail "state in $location"
  [ "$(qparam "$location" iss)" = "$issuer" ] || fail "iss in $location"
  code=$(qparam "$location" code)
  [ -n "$code" ] || fail "no code in $location"
}

# Redeems $code (HTTP Basic client authentication, the PKCE verifier); writes the ID token's
# payload to $work/claims.json.
redeem() {
  curl -sS -o "$work/token.json" -w '%{http_code}' -u "$client_id:$client_secret" \
    --data-urlencode grant_type=authorization_code --data-urlencode "code=$code" \
    --data-urlencode "redirect_uri=$redirect_uri" --data-urlencode "code_verifier=$verifier" \
    "$token_endpoint" >"$work/token.status" || fail "token request"
  [ "$(cat "$work/token.status")" = 200 ] || fail "token endpoint $(cat "$work/token.status"): $(cat "$work/token.json")"
  python3 - "$work/token.json" >"$work/claims.json" <<'EOF' || fail "id_token: $(cat "$work/token.json")"
import base64, json, sys
tok = json.load(open(sys.argv[1]))
assert tok["token_type"] == "Bearer", tok
header, payload, _ = tok["id_token"].split(".")
dec = lambda s: json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
assert dec(header)["alg"] == "RS256", dec(header)
print(json.dumps(dec(payload)))
EOF
}

# Checks the ID token's claims: claims LOGIN EMAIL EMAIL_VERIFIED NAME
check_claims() {
  python3 - "$work/claims.json" "$issuer" "$client_id" "$nonce" "$@" <<'EOF' || fail "ID token claims: $(cat "$work/claims.json")"
import json, sys, time
c = json.load(open(sys.argv[1]))
issuer, client_id, nonce, sub, email, verified, name = sys.argv[2:]
assert c["iss"] == issuer, c
assert c["aud"] == client_id, c
assert c["sub"] == sub, c
assert c["email"] == email, c
assert c["email_verified"] is (verified == "true"), c
assert c["name"] == name, c
assert c["nonce"] == nonce, c
assert isinstance(c["auth_time"], int) and c["auth_time"] <= time.time() + 1, c
assert c["exp"] > time.time(), c
EOF
  auth_time=$(json "$work/claims.json" auth_time)
}

# 1. A whole sign-in: authorization request -> login form -> back to the client.
jar="$work/ada.jar"
redirects=0
authorize "$jar"
follow "$jar"
[ "$status" = 200 ] || fail "expected the login form, got $status $location"
read_login_form
ok "login form at $form_action after $redirects redirect(s): fields prompt=login, login, password"
before=$redirects
login "$jar" ada@example.test
ok "signed in as ada@example.test: $((redirects - before)) redirect(s) from the form post to the client (no consent screen)"
redeem
check_claims ada@example.test ada@example.test true ada
first_auth_time=$auth_time
ok "ID token: $(cat "$work/claims.json")"
# An authorization code works once.
curl -sS -o "$work/again.json" -w '%{http_code}' -u "$client_id:$client_secret" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$code" \
  --data-urlencode "redirect_uri=$redirect_uri" --data-urlencode "code_verifier=$verifier" \
  "$token_endpoint" >"$work/again.status"
[ "$(cat "$work/again.status")" = 400 ] || fail "a reused code was accepted"
ok "a reused code is refused (invalid_grant)"
# The wrong verifier is refused.
authorize "$jar"
follow "$jar"
back_at_client
good_verifier=$verifier
verifier=wrong-wrong-wrong-wrong-wrong-wrong-wrong-wrong-wrong
curl -sS -o "$work/bad.json" -w '%{http_code}' -u "$client_id:$client_secret" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$code" \
  --data-urlencode "redirect_uri=$redirect_uri" --data-urlencode "code_verifier=$verifier" \
  "$token_endpoint" >"$work/bad.status"
[ "$(cat "$work/bad.status")" = 400 ] || fail "a wrong code_verifier was accepted"
ok "a wrong code_verifier is refused; silent sign-in on the existing session went straight back"
verifier=$good_verifier

# 2. max_age=0 and prompt=login (together, then each alone) show the login form again on
#    the existing session, and auth_time moves on.
sleep 1.1
for extra in "max_age=0&prompt=login" "max_age=0" "prompt=login"; do
  redirects=0
  authorize "$jar" "$extra"
  follow "$jar"
  [ "$status" = 200 ] || fail "$extra: no login form, went to $location"
  login "$jar" ada@example.test
  redeem
  check_claims ada@example.test ada@example.test true ada
  [ "$auth_time" -gt "$first_auth_time" ] || fail "$extra: auth_time $auth_time did not move on from $first_auth_time"
  ok "$extra: the login form again on the existing session; auth_time $first_auth_time -> $auth_time"
done

# 3. Without them, the existing session signs in silently (no form).
redirects=0
authorize "$jar"
follow "$jar"
back_at_client
redeem
check_claims ada@example.test ada@example.test true ada
ok "no max_age/prompt: silent sign-in on the existing session ($redirects redirect(s))"

# 4. An unverified email (a fresh browser: no provider session); a login without '@'.
jar="$work/unverified.jar"
authorize "$jar"
follow "$jar"
login "$jar" unverified@example.test
redeem
check_claims unverified@example.test unverified@example.test false unverified
ok "unverified@example.test: email_verified false"
jar="$work/grace.jar"
authorize "$jar"
follow "$jar"
login "$jar" grace
redeem
check_claims grace grace@example.test true grace
ok "grace: email grace@example.test"

# 5. Another account on an existing session (prompt=login): oidc-provider first ends the old
#    session with a self-submitting form (POST /session/end/confirm, logout=yes), then carries
#    on with the new account. A browser does that by itself; here the form is posted by hand.
jar="$work/ada.jar"
authorize "$jar" "prompt=login"
follow "$jar"
read_login_form
hop "$jar" "$form_action" --data-urlencode prompt=login --data-urlencode login=unverified-bob --data-urlencode password=x
follow "$jar"
[ "$status" = 200 ] || fail "account switch: expected the logout form, got $status $location"
python3 - "$work/body" >"$work/logout.args" <<'EOF' || fail "account switch: no logout form: $(head -c 400 "$work/body")"
import html, re, sys
page = open(sys.argv[1]).read()
action = re.search(r'<form[^>]*action="([^"]+)"', page).group(1)
fields = re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page)
print(html.unescape(action))
for k, v in fields:
    print(f"{html.unescape(k)}={html.unescape(v)}")
EOF
mapfile -t logout <"$work/logout.args"
args=()
for kv in "${logout[@]:1}"; do args+=(--data-urlencode "$kv"); done
hop "$jar" "${logout[0]}" "${args[@]}"
follow "$jar"
back_at_client
redeem
check_claims unverified-bob unverified-bob@example.test false unverified-bob
ok "account switch on an existing session: logout form to ${logout[0]}, then signed in as unverified-bob"

if grep -v '^oidc-provider WARNING: ' "$work/stderr" | grep -q .; then
  echo "--- provider stderr (beyond its start-up warnings):"
  grep -v '^oidc-provider WARNING: ' "$work/stderr"
fi
echo "PASS"
