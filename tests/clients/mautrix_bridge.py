#!/usr/bin/env python3
"""A small bridge written with mautrix-python's appservice library, driven by tests/e2e/bridge.rs.

    mautrix_bridge.py registration FILE PORT   writes the bridge's registration file (as bridges
                                               do with `-g`) for a bridge listening on PORT
    mautrix_bridge.py run FILE HOMESERVER_URL  runs the bridge; commands arrive as JSON lines on
                                               stdin, each answered by one JSON line on stdout

The bridge keeps every event the homeserver pushes to it (events, ephemeral data, to-device
messages, each transaction once, as mautrix does) and acts through mautrix's IntentAPI: it
registers puppets, joins and sends as them (masquerading with the as_token), pings the
homeserver, and signs a puppet in with m.login.application_service. "down" makes it answer 503
to transactions, as a bridge in maintenance, until "up".
"""

import asyncio
import json
import secrets
import sys

from aiohttp import web
from mautrix.api import Method, Path
from mautrix.appservice import AppService
from mautrix.appservice.state_store import ASStateStore
from mautrix.client.state_store.memory import MemoryStateStore

DOMAIN = "localhost"
WAIT_SECONDS = 30


class MemoryASStateStore(ASStateStore, MemoryStateStore):
    def __init__(self) -> None:
        ASStateStore.__init__(self)
        MemoryStateStore.__init__(self)


def write_registration(path: str, port: int) -> None:
    registration = {
        "id": "mautrix-e2e",
        "url": f"http://127.0.0.1:{port}",
        "as_token": secrets.token_hex(32),
        "hs_token": secrets.token_hex(32),
        "sender_localpart": "mautrixbot",
        "namespaces": {
            "users": [{"exclusive": True, "regex": f"@mx_.*:{DOMAIN}"}],
            "aliases": [{"exclusive": True, "regex": f"#mx_.*:{DOMAIN}"}],
            "rooms": [],
        },
        "rate_limited": False,
        # What mautrix bridges write for ephemeral events and appservice-side encryption.
        "receive_ephemeral": True,
        "de.sorunome.msc2409.push_ephemeral": True,
        "org.matrix.msc3202": True,
    }
    # JSON is YAML.
    with open(path, "w") as f:
        json.dump(registration, f, indent=2)


class Bridge:
    def __init__(self, registration: dict, homeserver: str) -> None:
        port = int(registration["url"].rsplit(":", 1)[1])
        self.port = port
        self.down = False
        self.received: list[dict] = []
        self.ephemeral: list[dict] = []
        self.to_device: list[dict] = []
        self.changed = asyncio.Event()
        self.appservice = AppService(
            server=homeserver,
            domain=DOMAIN,
            as_token=registration["as_token"],
            hs_token=registration["hs_token"],
            bot_localpart=registration["sender_localpart"],
            id=registration["id"],
            state_store=MemoryASStateStore(),
            ephemeral_events=True,
            encryption_events=True,
        )
        self.appservice.synchronous_handlers = True
        self.appservice.matrix_event_handler(self.on_event)
        self.appservice.to_device_handler = self.on_to_device
        self.appservice.app.middlewares.append(self.maintenance)

    @web.middleware
    async def maintenance(self, request: web.Request, handler):
        if self.down and "/transactions/" in request.path:
            return web.json_response({"errcode": "M_UNKNOWN", "error": "bridge in maintenance"}, status=503)
        return await handler(request)

    async def on_event(self, event) -> None:
        raw = event.serialize()
        if event.type.is_ephemeral:
            self.ephemeral.append(raw)
        else:
            self.received.append(raw)
        self.changed.set()

    async def on_to_device(self, event) -> None:
        self.to_device.append(event.serialize())
        self.changed.set()

    async def until(self, found):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while True:
            result = found()
            if result is not None:
                return result
            self.changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("waited too long")
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    def messages(self, room: str) -> list[dict]:
        return [
            {"body": e["content"].get("body"), "sender": e["sender"], "event_id": e["event_id"]}
            for e in self.received
            if e.get("room_id") == room and e.get("type") == "m.room.message"
        ]

    async def handle(self, cmd: dict):
        what = cmd["cmd"]
        intent = self.appservice.intent
        if what == "whoami":
            return {"user_id": (await intent.whoami()).user_id}
        if what == "ping":
            return {"duration_ms": await self.appservice.ping_self(cmd.get("txn_id"))}
        if what == "register":
            puppet = intent.user(cmd["user_id"])
            await puppet.ensure_registered()
            return {"ok": True}
        if what == "login":
            # m.login.application_service: a device for a puppet (spec 1.2).
            answer = await intent.api.request(
                Method.POST,
                Path.v3.login,
                content={
                    "type": "m.login.application_service",
                    "identifier": {"type": "m.id.user", "user": cmd["user_id"]},
                },
            )
            return {"user_id": answer["user_id"], "device_id": answer["device_id"]}
        if what == "join":
            await intent.user(cmd["user_id"]).ensure_joined(cmd["room"])
            return {"ok": True}
        if what == "send":
            event_id = await intent.user(cmd["user_id"]).send_text(cmd["room"], cmd["body"])
            return {"event_id": event_id}
        if what == "messages":
            want = cmd["count"]
            return await self.until(lambda: m if len(m := self.messages(cmd["room"])) >= want else None)
        if what == "ephemeral":
            def typing_or_receipt():
                for e in self.ephemeral:
                    if e.get("type") != cmd["type"] or e.get("room_id") != cmd.get("room"):
                        continue
                    text = json.dumps(e)
                    if cmd["contains"] in text:
                        return e
                return None
            found = await self.until(typing_or_receipt)
            if cmd.get("all"):
                same = [e for e in self.ephemeral if json.dumps(e) == json.dumps(found)]
                return {"event": found, "times": len(same)}
            return found
        if what == "to_device":
            return await self.until(
                lambda: next((e for e in self.to_device if e.get("type") == cmd["type"]), None)
            )
        if what == "down":
            self.down = True
            return {"ok": True}
        if what == "up":
            self.down = False
            return {"ok": True}
        raise ValueError(f"unknown command {what}")


async def run(path: str, homeserver: str) -> None:
    with open(path) as f:
        registration = json.load(f)
    bridge = Bridge(registration, homeserver)
    await bridge.appservice.start(host="127.0.0.1", port=bridge.port)
    print(json.dumps({"ready": True}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        try:
            answer = {"ok": True, "result": await bridge.handle(cmd)}
        except Exception as e:  # the test reports what went wrong
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)
    await bridge.appservice.stop()


def main() -> None:
    if sys.argv[1] == "registration":
        write_registration(sys.argv[2], int(sys.argv[3]))
    else:
        asyncio.run(run(sys.argv[2], sys.argv[3]))


if __name__ == "__main__":
    main()
