"""A real client library (matrix-nio) against Trellis: register, log in, create a room,
invite, join, send, sync, paginate, set a display name, and upload and download media.

Usage: python3 nio_scenario.py http://127.0.0.1:8008
Exits 0 on success; prints what went wrong otherwise.
"""

import asyncio
import io
import sys
import uuid

from nio import (
    AsyncClient,
    DownloadResponse,
    JoinResponse,
    LoginResponse,
    ProfileGetDisplayNameResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomSendResponse,
    SyncResponse,
    UploadResponse,
)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def main(url: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    alice = AsyncClient(url, f"nioalice{suffix}")
    bob = AsyncClient(url, f"niobob{suffix}")
    try:
        for c in (alice, bob):
            resp = await c.register(c.user, "correct horse", device_name="nio")
            check(isinstance(resp, RegisterResponse), f"register: {resp}")
            resp = await c.login("correct horse", device_name="nio-login")
            check(isinstance(resp, LoginResponse), f"login: {resp}")

        created = await alice.room_create(name="Nio room", invite=[bob.user_id])
        check(isinstance(created, RoomCreateResponse), f"room_create: {created}")
        room_id = created.room_id

        first = await bob.sync(timeout=0)
        check(isinstance(first, SyncResponse), f"sync: {first}")
        check(room_id in first.rooms.invite, "bob sees the invite")
        joined = await bob.join(room_id)
        check(isinstance(joined, JoinResponse), f"join: {joined}")

        since = (await bob.sync(timeout=0)).next_batch
        for i in range(3):
            sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": f"hello {i}"})
            check(isinstance(sent, RoomSendResponse), f"room_send: {sent}")

        update = await bob.sync(timeout=10000, since=since)
        check(isinstance(update, SyncResponse), f"incremental sync: {update}")
        bodies = [getattr(e, "body", None) for e in update.rooms.join[room_id].timeline.events]
        check([b for b in bodies if b] == ["hello 0", "hello 1", "hello 2"], f"timeline: {bodies}")

        page = await bob.room_messages(room_id, start=update.next_batch, limit=10)
        check(isinstance(page, RoomMessagesResponse), f"room_messages: {page}")
        back = [getattr(e, "body", None) for e in page.chunk]
        check([b for b in back if b][:3] == ["hello 2", "hello 1", "hello 0"], f"messages: {back}")

        await alice.set_displayname("Nio Alice")
        name = await bob.get_displayname(alice.user_id)
        check(isinstance(name, ProfileGetDisplayNameResponse) and name.displayname == "Nio Alice", f"displayname: {name}")

        data = b"trellis " * 1000
        up, _ = await alice.upload(io.BytesIO(data), content_type="text/plain", filename="t.txt", filesize=len(data))
        check(isinstance(up, UploadResponse), f"upload: {up}")
        down = await bob.download(up.content_uri)
        check(isinstance(down, DownloadResponse) and down.body == data, f"download: {down}")
        print("nio scenario passed")
    finally:
        await alice.close()
        await bob.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
