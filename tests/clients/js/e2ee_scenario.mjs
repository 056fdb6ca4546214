//! matrix-js-sdk (with its Rust crypto) driving an encrypted DM between two fresh users against a Trellis server.
//
// Usage: node e2ee_scenario.mjs <base_url>
//
// Alice and Bob register over plain HTTP (the m.login.dummy UIA flow), log in through the SDK, start Rust crypto
// (in-memory store) and sync. Alice creates a DM the way Element does (is_direct, invite, m.room.encryption in the
// initial state), Bob joins, each sends an encrypted message that the other must decrypt, and Bob's room
// notification_count from the server's /sync must rise with Alice's messages and fall to 0 after his read receipt.
// Like Element, both set up cross-signing: Alice before the DM, Bob after it, so Alice learns of Bob's new keys
// through device_lists.changed in /sync and must then see Bob's device signed by his self-signing key.
// Alice then backs up her room keys (key backup, as Element sets up), and at the end replaces her cross-signing keys,
// which the server must guard with user-interactive auth (answered with her password).
// Element Web's invite flow is checked in an unencrypted room: a message sent before bob accepts must be in his
// timeline as soon as his client sees the join.
// The other calls Element makes around a DM are checked too (members, typing, read markers, devices, profile);
// a few more start-up calls (TURN, third-party protocols, user directory) are only probed and reported.
//
// Every HTTP request the SDK makes is logged (method, path template, status; errcode for failures) and summarised
// at the end, on success and on failure. JS_SDK_DEBUG=1 also shows the SDK's own debug logs.
// Prints "js-sdk scenario passed" on success; exits non-zero with a message on failure or after the global timeout.

const GLOBAL_TIMEOUT_MS = Number(process.env.JS_SCENARIO_TIMEOUT_MS || 90_000);
const STEP_TIMEOUT_MS = 30_000;
const DEBUG = process.env.JS_SDK_DEBUG === "1";

if (!DEBUG) {
    // The SDK (loglevel) and the Rust crypto tracing log through the console; keep only warnings and errors.
    console.debug = () => {};
    console.info = () => {};
    console.log = () => {};
    // Warnings and errors: one line each (the SDK logs whole error objects; the HTTP log below has the details).
    const oneLine = (level) => (...args) => {
        const text = args.map((a) => (a instanceof Error ? `${a.name}: ${a.message}` : typeof a === "object" ? "" : String(a)));
        const line = text.join(" ").split("\n")[0];
        // The call manager's complaint about state for a room the store does not hold yet is noise in this scenario.
        if (!line.includes("[MatrixRTCSessionManager]")) process.stderr.write(`[sdk ${level}] ${line}\n`);
    };
    console.warn = oneLine("warn");
    console.error = oneLine("error");
}

const say = (msg) => process.stdout.write(`${msg}\n`);
const base = (process.argv[2] || "").replace(/\/+$/, "");
if (!base) {
    process.stderr.write("usage: node e2ee_scenario.mjs <base_url>\n");
    process.exit(2);
}

// ---- request log -------------------------------------------------------------------------------------------------

/** `${who} ${method} ${template}` -> Map(status -> count) */
const requestSummary = new Map();
/** Failures in order: "who METHOD path -> status errcode: error" */
const failures = [];
/** The latest unread_notifications per (user, room) as the server's /sync reported them. */
const serverCounts = new Map();

/** Replaces IDs and transaction IDs in a client-server path by placeholders, so requests group by endpoint. */
function template(pathname) {
    const segs = pathname.split("/").map((s) => decodeURIComponent(s));
    const out = [];
    for (let i = 0; i < segs.length; i++) {
        const s = segs[i];
        const prev = segs[i - 2];
        if (s.startsWith("!")) out.push("{roomId}");
        else if (s.startsWith("@")) out.push("{userId}");
        else if (s.startsWith("#")) out.push("{alias}");
        else if (s.startsWith("$")) out.push("{eventId}");
        else if (i >= 2 && (prev === "send" || prev === "sendToDevice" || prev === "redact")) out.push("{txnId}");
        else if (segs[i - 1] === "filter" && /^[0-9A-Za-z_-]+$/.test(s) && segs[i - 3] === "user") out.push("{filterId}");
        else if (segs[i - 1] === "devices" && s) out.push("{deviceId}");
        else out.push(s);
    }
    return out.join("/");
}

function record(who, method, url, status, note, expected = false) {
    const u = new URL(url);
    const key = `${who.padEnd(5)} ${method.padEnd(6)} ${template(u.pathname)}`;
    const statuses = requestSummary.get(key) || new Map();
    statuses.set(status, (statuses.get(status) || 0) + 1);
    requestSummary.set(key, statuses);
    if (!expected && (status === "ERR" || status >= 400)) {
        const line = `${who} ${method} ${u.pathname} -> ${status}${note ? ` ${note}` : ""}`;
        failures.push(line);
        process.stderr.write(`[http] ${line}\n`);
    }
}

/** A fetch that records every request and remembers the notification counts found in /sync responses. */
function loggingFetch(who, expectedStatus = null) {
    // GET /room_keys/version answers 404 M_NOT_FOUND while the user has no key backup: the SDK expects that.
    const expected = (path, status, note) =>
        status === expectedStatus || (status === 404 && path.endsWith("/room_keys/version") && note.startsWith("M_NOT_FOUND"));
    return async (input, init = {}) => {
        const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
        const method = (init.method || (typeof input === "object" && input.method) || "GET").toUpperCase();
        let res;
        try {
            res = await fetch(input, init);
        } catch (e) {
            record(who, method, url, "ERR", String(e && e.message));
            throw e;
        }
        let note = "";
        if (res.status >= 400) {
            try {
                const body = await res.clone().json();
                note = body.flows && !body.errcode ? "(user-interactive auth challenge)" : `${body.errcode}: ${body.error}`;
            } catch {
                note = "(body is not JSON)";
            }
        } else if (new URL(url).pathname.endsWith("/sync")) {
            try {
                const body = await res.clone().json();
                for (const [roomId, room] of Object.entries(body?.rooms?.join || {})) {
                    if (room.unread_notifications) serverCounts.set(`${who} ${roomId}`, room.unread_notifications);
                }
            } catch {
                // The SDK reports a broken sync body itself.
            }
        }
        record(who, method, url, res.status, note, expected(new URL(url).pathname, res.status, note));
        return res;
    };
}

function printSummary() {
    say("---- HTTP requests made by the SDK (and the registration), by endpoint: status x count ----");
    for (const key of [...requestSummary.keys()].sort()) {
        const statuses = [...requestSummary.get(key).entries()].map(([s, n]) => `${s}x${n}`).join(" ");
        say(`${key}  ${statuses}`);
    }
    if (failures.length) {
        say("---- failed requests, in order ----");
        for (const f of failures) say(f);
    }
}

function fail(msg) {
    process.stderr.write(`js-sdk scenario FAILED: ${msg}\n`);
    printSummary();
    process.exit(1);
}

setTimeout(() => fail(`global timeout of ${GLOBAL_TIMEOUT_MS} ms; last step: ${currentStep}`), GLOBAL_TIMEOUT_MS);
process.on("unhandledRejection", (e) => fail(`unhandled rejection during "${currentStep}": ${e?.stack || e}`));

let currentStep = "start";
function step(name) {
    currentStep = name;
    say(`step: ${name}`);
}

/** Polls `check` (which returns a truthy value when done) until it passes; `explain` describes the state on timeout. */
async function waitFor(what, check, explain = () => "", timeoutMs = STEP_TIMEOUT_MS, intervalMs = 100) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const v = await check();
        if (v) return v;
        if (Date.now() > deadline) fail(`timed out waiting for ${what}${explain() ? `: ${explain()}` : ""}`);
        await new Promise((r) => setTimeout(r, intervalMs));
    }
}

// ---- the scenario ------------------------------------------------------------------------------------------------

const sdk = await import("matrix-js-sdk");
const PASSWORD = "correct-horse-battery";

/** Registers a fresh account through the UIA dummy flow: the first call yields a session, the second completes it. */
async function register(who, username) {
    const f = loggingFetch(who, 401);
    const url = `${base}/_matrix/client/v3/register`;
    const post = (body) =>
        f(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const first = await post({ username, password: PASSWORD, inhibit_login: true });
    const flows = await first.json();
    if (first.status !== 401 || !flows.session) fail(`register ${username}: expected 401 with a UIA session, got ${first.status} ${JSON.stringify(flows)}`);
    const second = await post({ username, password: PASSWORD, inhibit_login: true, auth: { type: "m.login.dummy", session: flows.session } });
    const done = await second.json();
    if (second.status !== 200 || !done.user_id) fail(`register ${username}: ${second.status} ${JSON.stringify(done)}`);
    return done.user_id;
}

/** Logs in through the SDK, starts Rust crypto and syncing; resolves once the first sync is processed. */
async function start(who, username) {
    const fetchFn = loggingFetch(who);
    const loginClient = sdk.createClient({ baseUrl: base, fetchFn });
    const login = await loginClient.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: username },
        password: PASSWORD,
        initial_device_display_name: `js-sdk ${who}`,
    });
    const client = sdk.createClient({
        baseUrl: base,
        fetchFn,
        userId: login.user_id,
        deviceId: login.device_id,
        accessToken: login.access_token,
    });
    await client.initRustCrypto({ useIndexedDB: false });
    const ready = new Promise((resolve) => {
        client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
            if (state === "PREPARED" || state === "SYNCING") resolve();
            // The SDK would retry for ever; a server that fails the start-up requests fails the scenario.
            if (state === "ERROR") fail(`${who}'s client could not sync: ${data?.error?.message || data?.error}`);
        });
    });
    await client.startClient({ initialSyncLimit: 20 });
    await ready;
    return client;
}

/**
 * Sets up (or with `reset`, replaces) cross-signing as Element does; the key upload retries with the password if the
 * server asks for user-interactive auth. Returns whether it asked.
 */
async function bootstrapCrossSigning(who, client, reset = false) {
    let askedForAuth = false;
    await client.getCrypto().bootstrapCrossSigning({
        setupNewCrossSigning: reset,
        authUploadDeviceSigningKeys: async (makeRequest) => {
            try {
                await makeRequest(null);
            } catch (e) {
                if (e?.httpStatus !== 401 || !e?.data?.session) throw e;
                askedForAuth = true;
                const identifier = { type: "m.id.user", user: client.getUserId() };
                await makeRequest({ type: "m.login.password", identifier, password: PASSWORD, session: e.data.session });
            }
        },
    });
    if (!(await client.getCrypto().isCrossSigningReady())) fail(`${who}'s cross-signing is not ready after bootstrapping`);
    return askedForAuth;
}

/** The event in `client`'s live timeline of `roomId` that `sender` sent with this plaintext body, once decrypted. */
function findDecrypted(client, roomId, sender, body) {
    const room = client.getRoom(roomId);
    if (!room) return null;
    return room
        .getLiveTimeline()
        .getEvents()
        .find((e) => e.getSender() === sender && e.isEncrypted() && e.getType() === "m.room.message" && e.getContent().body === body);
}

/** Describes the encrypted events of `sender` in the room, for a timeout message. */
function describeEncrypted(client, roomId, sender) {
    const room = client.getRoom(roomId);
    if (!room) return "the room is unknown to the client";
    const evs = room.getLiveTimeline().getEvents().filter((e) => e.getSender() === sender && e.isEncrypted());
    if (!evs.length) return `no encrypted event from ${sender} in the timeline`;
    return evs
        .map((e) =>
            e.isDecryptionFailure()
                ? `${e.getId()} undecryptable (${e.decryptionFailureReason}: ${e.getContent().body})`
                : `${e.getId()} ${e.getType()} ${JSON.stringify(e.getContent().body)}`,
        )
        .join("; ");
}

async function sendAndExpectDecrypted(from, to, roomId, body) {
    const { event_id } = await from.sendMessage(roomId, { msgtype: "m.text", body });
    await waitFor(
        `${to.getUserId()} to decrypt "${body}"`,
        () => findDecrypted(to, roomId, from.getUserId(), body),
        () => describeEncrypted(to, roomId, from.getUserId()),
    );
    return event_id;
}

const suffix = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
step("register alice and bob (UIA m.login.dummy)");
const aliceId = await register("alice", `alice_${suffix}`);
const bobId = await register("bob", `bob_${suffix}`);

step("log in through the SDK and start Rust crypto and sync");
const alice = await start("alice", `alice_${suffix}`);
const bob = await start("bob", `bob_${suffix}`);

step("alice sets up cross-signing");
await bootstrapCrossSigning("alice", alice);

step("alice creates an encrypted DM inviting bob");
const { room_id: roomId } = await alice.createRoom({
    is_direct: true,
    invite: [bobId],
    preset: sdk.Preset.TrustedPrivateChat,
    visibility: sdk.Visibility.Private,
    initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
});
await alice.setAccountData(sdk.EventType.Direct, { [bobId]: [roomId] });

step("bob sees the invite and joins");
await waitFor(`bob to see the invite to ${roomId}`, () => bob.getRoom(roomId)?.getMyMembership() === "invite");
await bob.joinRoom(roomId);
await waitFor(`alice to see bob join`, () => alice.getRoom(roomId)?.getMember(bobId)?.membership === "join");
await waitFor(`bob's client to hold the joined room`, () => bob.getRoom(roomId)?.getMyMembership() === "join");
for (const [who, c] of [["alice", alice], ["bob", bob]]) {
    if (!(await c.getCrypto().isEncryptionEnabledInRoom(roomId))) fail(`${who}'s client does not see the room as encrypted`);
}

step("the calls Element makes around a DM: login flows, devices, profile, members, typing");
const flows = await sdk.createClient({ baseUrl: base, fetchFn: loggingFetch("anon") }).loginFlows();
if (!flows.flows?.some((f) => f.type === "m.login.password")) fail(`GET /login offers no m.login.password: ${JSON.stringify(flows)}`);
const { devices } = await alice.getDevices();
if (!devices?.some((d) => d.device_id === alice.getDeviceId())) fail(`GET /devices lacks alice's device: ${JSON.stringify(devices)}`);
await alice.getProfileInfo(aliceId);
const { chunk: members } = await alice.members(roomId);
const joined = members.filter((m) => m.content?.membership === "join").map((m) => m.state_key).sort();
if (JSON.stringify(joined) !== JSON.stringify([aliceId, bobId].sort())) fail(`/members lists ${JSON.stringify(joined)} as joined`);
await bob.sendTyping(roomId, true, 10_000);
await waitFor("alice to see bob typing", () => alice.getRoom(roomId)?.getMember(bobId)?.typing);
await bob.sendTyping(roomId, false, 0);
for (const [name, probe] of [
    ["GET /voip/turnServer", () => alice.turnServer()],
    ["GET /thirdparty/protocols", () => alice.getThirdpartyProtocols()],
    ["POST /user_directory/search finds bob", async () => {
        const found = await alice.searchUserDirectory({ term: bobId.slice(1, bobId.indexOf(":")) });
        if (!found.results?.some((u) => u.user_id === bobId)) throw new Error(`not found: ${JSON.stringify(found)}`);
    }],
]) {
    try {
        await probe();
        say(`probe ok: ${name}`);
    } catch (e) {
        say(`probe FAILED (not fatal): ${name}: ${e?.message || e}`);
    }
}

step("alice sends an encrypted message that bob decrypts");
await sendAndExpectDecrypted(alice, bob, roomId, "Hello Bob, this is secret");
const raw = bob.getRoom(roomId).getLiveTimeline().getEvents().filter((e) => e.getSender() === aliceId).at(-1);
if (raw.getWireType() !== "m.room.encrypted") fail(`alice's message reached bob as ${raw.getWireType()}, not m.room.encrypted`);

step("bob replies with an encrypted message that alice decrypts");
await sendAndExpectDecrypted(bob, alice, roomId, "Hi Alice, secret received");

step("bob sets up cross-signing; alice learns of it through device_lists and sees his device cross-signed");
await bootstrapCrossSigning("bob", bob);
await waitFor("alice to see bob's cross-signing keys", () => alice.getCrypto().userHasCrossSigningKeys(bobId));
await waitFor(
    "alice to see bob's device signed by bob's self-signing key",
    async () => (await alice.getCrypto().getDeviceVerificationStatus(bobId, bob.getDeviceId()))?.signedByOwner,
    () => "keys/query does not show the signature from /keys/signatures/upload",
);
if (!(await bob.getCrypto().userHasCrossSigningKeys(aliceId, true))) fail("bob does not see alice's cross-signing keys");

step("alice backs up her room keys (key backup)");
await alice.getCrypto().resetKeyBackup();
// The SDK enables the new version in the background (GET /room_keys/version, then the signature check).
const backupVersion = await waitFor("alice's new key backup to become active", () =>
    alice.getCrypto().getActiveSessionBackupVersion(),
);
let backedUp = null;
await waitFor(
    `the server to hold alice's keys for ${roomId} in backup version ${backupVersion}`,
    async () => {
        backedUp = await alice.http.authedRequest("GET", "/room_keys/keys", { version: backupVersion });
        return Object.keys(backedUp?.rooms?.[roomId]?.sessions || {}).length > 0;
    },
    () => `GET /room_keys/keys answers ${JSON.stringify(backedUp)}`,
    STEP_TIMEOUT_MS,
    500,
);

step("bob's notification_count rises with alice's messages");
const serverCount = () => serverCounts.get(`bob ${roomId}`)?.notification_count ?? 0;
const before = serverCount();
await sendAndExpectDecrypted(alice, bob, roomId, "one more");
const lastId = await sendAndExpectDecrypted(alice, bob, roomId, "and another one");
await waitFor(
    "bob's server notification_count to count alice's messages",
    () => serverCount() >= 2 && serverCount() > before,
    () => `before ${before}, now ${JSON.stringify(serverCounts.get(`bob ${roomId}`))}`,
);
const sdkCount = () => bob.getRoom(roomId).getUnreadNotificationCount(sdk.NotificationCountType.Total);
await waitFor("the SDK's unread count for bob to be positive", () => sdkCount() > 0, () => `SDK says ${sdkCount()}`);
say(`bob: server notification_count ${before} -> ${serverCount()}, SDK count ${sdkCount()}`);

step("bob's read receipt brings notification_count to 0");
const lastEvent = bob.getRoom(roomId).findEventById(lastId);
if (!lastEvent) fail(`bob's client does not hold alice's last event ${lastId}`);
await bob.sendReadReceipt(lastEvent, sdk.ReceiptType.Read);
await waitFor(
    "bob's server notification_count to fall to 0 after the receipt",
    () => serverCounts.get(`bob ${roomId}`)?.notification_count === 0,
    () => `now ${JSON.stringify(serverCounts.get(`bob ${roomId}`))}`,
);
await waitFor("the SDK's unread count for bob to be 0", () => sdkCount() === 0, () => `SDK says ${sdkCount()}`);
await bob.setRoomReadMarkers(roomId, lastId);
await waitFor(
    "bob's m.fully_read marker to come back in the room's account data",
    () => bob.getRoom(roomId)?.getAccountData("m.fully_read")?.getContent()?.event_id === lastId,
);

step("Element Web's flow: a message sent before bob accepts an invite is in his timeline at once");
// The incremental sync that brings bob's join must carry the room as an initial sync would (the latest events he
// may see, with a pagination token), or Element shows only the join and "You can't see earlier messages".
const { room_id: laterRoom } = await alice.createRoom({ preset: sdk.Preset.PrivateChat, name: "Before you joined" });
await alice.invite(laterRoom, bobId);
await waitFor(`bob to see the invite to ${laterRoom}`, () => bob.getRoom(laterRoom)?.getMyMembership() === "invite");
const { event_id: earlyId } = await alice.sendMessage(laterRoom, { msgtype: "m.text", body: "sent before you joined" });
// Bob's client syncs on before he accepts (here: it sees a second invite), so its sync token passes alice's message.
const { room_id: markerRoom } = await alice.createRoom({ preset: sdk.Preset.PrivateChat, invite: [bobId] });
await waitFor(`bob to see the invite to ${markerRoom}`, () => bob.getRoom(markerRoom)?.getMyMembership() === "invite");
await bob.joinRoom(laterRoom);
await waitFor(`bob's client to hold ${laterRoom} as joined`, () => bob.getRoom(laterRoom)?.getMyMembership() === "join");
const laterTimeline = bob.getRoom(laterRoom).getLiveTimeline();
if (!laterTimeline.getEvents().some((e) => e.getId() === earlyId)) {
    const seen = laterTimeline.getEvents().map((e) => `${e.getType()} ${e.getStateKey() ?? ""}`.trim());
    fail(`bob's live timeline lacks alice's message from before the join; it holds ${JSON.stringify(seen)}`);
}
// The room is small enough to come whole (not limited, from its create event); otherwise there must be a way back.
const reachesStart = laterTimeline.getEvents().some((e) => e.getType() === "m.room.create");
if (!reachesStart && laterTimeline.getPaginationToken(sdk.EventTimeline.BACKWARDS) === null) {
    fail("bob's timeline neither reaches the room's creation nor has a token to page back");
}

step("alice replaces her cross-signing keys: the server asks for user-interactive auth");
if (!(await bootstrapCrossSigning("alice", alice, true))) fail("replacing cross-signing keys needed no user-interactive auth");

alice.stopClient();
bob.stopClient();
printSummary();
say("js-sdk scenario passed");
process.exit(0);
