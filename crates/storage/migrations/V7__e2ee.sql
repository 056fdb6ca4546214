-- End-to-end encryption: device keys, one-time and fallback keys, cross-signing keys and
-- signatures, the device-list change stream, and send-to-device messages.
-- Writers (each table has exactly one):
--   auth: device_keys, one_time_keys, fallback_keys, cross_signing_keys, key_signatures,
--         device_list_changes, e2ee_streams
--   sync: to_device_messages, to_device_txns (positions from the `to_device` row of sync_streams)
-- Also an index on `memberships` (written by rooms) for the device-list readers' "whose
-- membership changed in this window" questions.
-- Keys of a device reference `devices`, so deleting a device deletes its keys and messages.

-- The device-list stream's position, bumped inside the writing transaction (as sync_streams):
-- writers commit in position order, so the row is always a safe "all committed" mark.
CREATE TABLE e2ee_streams (
    stream TEXT PRIMARY KEY,
    pos    BIGINT NOT NULL
);
INSERT INTO e2ee_streams (stream, pos) VALUES ('device_lists', 0);

-- One row per change: the user's devices or their keys changed at `pos`.
CREATE TABLE device_list_changes (
    pos     BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (pos, user_id)
);
CREATE INDEX device_list_changes_user ON device_list_changes (user_id, pos);

-- A device's identity keys as uploaded (a signed JSON object; uploaded signatures are
-- kept apart in key_signatures and merged in when queried).
CREATE TABLE device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- Claimed keys are deleted; `id` orders them (oldest handed out first).
CREATE TABLE one_time_keys (
    id        BIGSERIAL PRIMARY KEY,
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    UNIQUE (user_id, device_id, algorithm, key_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- At most one fallback key per device and algorithm (MSC2732); handed out when no one-time
-- key is left, and marked used.
CREATE TABLE fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    used      BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- key_type: master, self_signing or user_signing. `public_key` is the unpadded base64 key.
CREATE TABLE cross_signing_keys (
    user_id    TEXT NOT NULL REFERENCES users (user_id),
    key_type   TEXT NOT NULL,
    public_key TEXT NOT NULL,
    key_json   TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded through /keys/signatures/upload. The target is a device ID or a
-- cross-signing public key of target_user_id.
CREATE TABLE key_signatures (
    target_user_id TEXT NOT NULL,
    target_key_id  TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    signer_key_id  TEXT NOT NULL,
    signature      TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- Messages waiting for a device; deleted once the device syncs with a token at or past `pos`.
CREATE TABLE to_device_messages (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    pos        BIGINT NOT NULL,
    sender     TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content    TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, pos),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- Transaction IDs already used per sending device (PUT /sendToDevice is idempotent).
CREATE TABLE to_device_txns (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Whose membership of a room changed in a window of the events stream (device_lists in /sync).
CREATE INDEX memberships_room_pos ON memberships (room_id, pos);
