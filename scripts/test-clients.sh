#!/usr/bin/env bash
# Installs the helper programs the test suites drive, if they are missing:
# - matrix-nio (PyPI), the real Matrix client of the end-to-end suite;
# - mautrix (PyPI, mautrix-python), the appservice library of the bridge that
#   tests/e2e/bridge.rs runs against Trellis;
# - matrix-js-sdk with its Rust crypto (npm, pinned by tests/clients/js/package-lock.json), the
#   encrypted-DM scenario of tests/e2e/js_sdk.rs, and oidc-provider (same package.json), the
#   real OpenID Connect provider of the upstream sign-in scenarios in tests/e2e/sso.rs;
# - aiosmtpd (PyPI), the SMTP server that receives the validation mails of tests/e2e/email.rs;
# - moto[server] (`moto_server`), the S3-compatible server the media contract tests store
#   blobs in;
# - the matrix-rust-sdk scenario (tests/clients/rust-sdk, Element X's libraries over sliding
#   sync), built with cargo into its own target directory, tests/clients/rust-sdk/target, so
#   the main build never compiles its dependencies (about five minutes cold on two cores).
# Failing to install is reported, not fatal: the scenario then skips itself, unless CI makes
# it mandatory with TRELLIS_REQUIRE_NIO=1, TRELLIS_REQUIRE_MAUTRIX=1, TRELLIS_REQUIRE_JS=1,
# TRELLIS_REQUIRE_S3=1, TRELLIS_REQUIRE_SMTP=1 or TRELLIS_REQUIRE_RUST_SDK=1.
set -uo pipefail

if ! python3 -c 'import nio' 2>/dev/null; then
  echo "installing matrix-nio for the end-to-end client scenario" >&2
  if ! python3 -m pip install --quiet --disable-pip-version-check matrix-nio >&2; then
    echo "warning: could not install matrix-nio (pip install matrix-nio)" >&2
  fi
fi

if ! python3 -c 'import mautrix.appservice' 2>/dev/null; then
  echo "installing mautrix for the end-to-end bridge scenario" >&2
  if ! python3 -m pip install --quiet --disable-pip-version-check mautrix >&2; then
    echo "warning: could not install mautrix (pip install mautrix)" >&2
  fi
fi

if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  echo "installing aiosmtpd for the end-to-end email scenarios" >&2
  if ! python3 -m pip install --quiet --disable-pip-version-check aiosmtpd >&2; then
    echo "warning: could not install aiosmtpd (pip install aiosmtpd)" >&2
  fi
fi

js_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/clients/js"
if [ ! -d "$js_dir/node_modules/matrix-js-sdk" ] || [ ! -d "$js_dir/node_modules/oidc-provider" ]; then
  echo "installing matrix-js-sdk and oidc-provider (npm ci) for the encrypted client and upstream sign-in scenarios" >&2
  if ! command -v npm >/dev/null 2>&1; then
    echo "warning: npm is missing, so matrix-js-sdk is not installed (apt-get install nodejs npm)" >&2
  elif ! (cd "$js_dir" && npm ci --silent --no-audit --no-fund >&2); then
    echo "warning: could not install matrix-js-sdk and oidc-provider (cd tests/clients/js && npm ci)" >&2
  fi
fi

rust_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/clients/rust-sdk"
echo "building the matrix-rust-sdk scenario (tests/clients/rust-sdk)" >&2
if ! (cd "$rust_dir" && CARGO_TARGET_DIR="$rust_dir/target" nice -n 10 cargo build --locked --quiet >&2); then
  echo "warning: could not build the matrix-rust-sdk scenario (cd tests/clients/rust-sdk && cargo build)" >&2
fi

if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing moto[server] for the S3 media store tests" >&2
  if ! python3 -m pip install --quiet --disable-pip-version-check 'moto[server]' >&2; then
    echo "warning: could not install moto[server] (pip install 'moto[server]')" >&2
  fi
fi
exit 0
