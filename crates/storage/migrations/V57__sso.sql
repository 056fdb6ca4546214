-- Written by the auth service: sign-in through upstream OpenID Connect providers
-- (crates/auth/src/sso/, docs/sso.md).

-- Which account an upstream identity signs in to: the provider's `idp_id` from the
-- configuration and the ID token's `sub`.
CREATE TABLE sso_links (
    idp_id     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (idp_id, subject)
);
CREATE INDEX sso_links_user ON sso_links (user_id);

-- Sign-ins under way at a provider, keyed by the SHA-256 of the `state` parameter: the
-- nonce the ID token must carry, the PKCE verifier, the callback URL the code was asked for,
-- and where the browser goes after (a client's redirectUrl, or the OAuth page to go on with;
-- for 'uia', the user-interactive auth session the sign-in completes a stage of).
-- Used once; purged when expired.
CREATE TABLE sso_sessions (
    state_hash    BYTEA PRIMARY KEY,
    idp_id        TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    callback_url  TEXT NOT NULL,
    purpose       TEXT NOT NULL CHECK (purpose IN ('login', 'oauth', 'uia')),
    redirect_url  TEXT NOT NULL,
    expires_ts    BIGINT NOT NULL
);
CREATE INDEX sso_sessions_expiry ON sso_sessions (expires_ts);
