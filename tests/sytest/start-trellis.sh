#!/bin/sh
# How SyTest starts Trellis: one monolith per homeserver instance SyTest asks for, configured
# from the SYTEST_* variables that the runner hands over (listed in the runner's CONTRACT.md).
# scripts/sytest.sh passes this file as the start command; TRELLIS_BIN names the binary.
#
# Everything SyTest expects of a homeserver under test is switched on here: open registration
# with m.login.dummy, guest accounts, no rate limits, URL previews of SyTest's own pages on
# 127.0.0.1, and outgoing HTTPS that trusts SyTest's CA (its push gateway and other mock
# servers use certificates it signs). Trellis does not federate yet, so the federation port
# and TLS files are unused: run SyTest with one server.
set -eu

: "${TRELLIS_BIN:?set TRELLIS_BIN to the trellis binary}"
: "${SYTEST_DB_URL:?SyTest gave no database (run it with --pg-admin-url)}"

mkdir -p "$SYTEST_HS_DIR/media"

# reqwest reads its trust roots through rustls-native-certs, which takes SSL_CERT_FILE in
# place of the system store: give it the system's roots and SyTest's CA together.
if [ -n "${SYTEST_CA_CERT:-}" ] && [ -r "$SYTEST_CA_CERT" ]; then
  roots="$SYTEST_HS_DIR/trusted-roots.pem"
  cat /etc/ssl/certs/ca-certificates.crt "$SYTEST_CA_CERT" > "$roots" 2>/dev/null ||
    cat "$SYTEST_CA_CERT" > "$roots"
  export SSL_CERT_FILE="$roots"
fi

# The file below is the whole configuration: TRELLIS_* variables from the caller's shell
# (make test exports some) would override it.
for name in $(env | sed -n 's/^\(TRELLIS_[A-Za-z0-9_]*\)=.*/\1/p'); do
  [ "$name" = TRELLIS_BIN ] || unset "$name"
done
export NO_COLOR=1

# SyTest's application services (instance 0): a `:`-separated list of registration files.
appservice_files=""
if [ -n "${SYTEST_APPSERVICE_FILES:-}" ]; then
  appservice_files=$(printf '%s' "$SYTEST_APPSERVICE_FILES" |
    awk 'BEGIN { RS = ":" } NF { printf "%s\"%s\"", (n++ ? ", " : ""), $0 }')
fi

# SyTest's mock captcha endpoint: verified when a client sends the stage, not required (as
# SyTest configures Synapse).
recaptcha=""
if [ -n "${SYTEST_RECAPTCHA_SITEVERIFY_API:-}" ]; then
  recaptcha="[registration.recaptcha]
siteverify_api = \"$SYTEST_RECAPTCHA_SITEVERIFY_API\"
public_key = \"${SYTEST_RECAPTCHA_PUBLIC_KEY:-}\"
private_key = \"${SYTEST_RECAPTCHA_PRIVATE_KEY:-}\"
required = false
"
fi

# SyTest's SMTP sink (the email 3PID tests read the validation mails it receives): plain SMTP
# (it knows HELO only; Trellis falls back to it). SyTest's mock identity server presents its
# CA's own certificate, which no verifier accepts (SyTest tells Synapse to check none).
email="[email]
insecure_identity_server_tls_for_testing = true
"
if [ -n "${SYTEST_SMTP_HOST:-}" ]; then
  email="${email}smtp_host = \"$SYTEST_SMTP_HOST\"
smtp_port = ${SYTEST_SMTP_PORT:-25}
smtp_tls = \"none\"
notif_from = \"Trellis <trellis@localhost>\"
"
fi

config="$SYTEST_HS_DIR/trellis.toml"
cat > "$config" <<EOF
server_name = "$SYTEST_SERVER_NAME"
public_baseurl = "$SYTEST_PUBLIC_BASEURL"

[http]
listen = "$SYTEST_BIND_HOST:$SYTEST_CLIENT_PORT"

[database]
url = "$SYTEST_DB_URL"

[registration]
enabled = true
# SyTest registers guests (POST /register?kind=guest); off by default
allow_guests = true

$recaptcha
$email
[rate_limits]
enabled = false

[media]
path = "$SYTEST_HS_DIR/media"
url_preview_enabled = true
url_preview_ip_whitelist = ["127.0.0.0/8"]

[appservices]
registration_files = [$appservice_files]
# SyTest's appservices answer at once; a quick retry keeps a late answer from stalling a test
retry_max_ms = 2000

[telemetry]
log_format = "text"
EOF

# SyTest's mock CAS server: m.login.cas and m.login.sso with their user-interactive auth
# stage (tests/12login/02cas.pl, the SSO tests of tests/10apidoc/13ui-auth.pl).
if [ -n "${SYTEST_CAS_SERVER_URL:-}" ]; then
  cat >> "$config" <<EOF

[sso.cas]
server_url = "$SYTEST_CAS_SERVER_URL"
EOF
fi

exec "$TRELLIS_BIN" --config "$config" serve
