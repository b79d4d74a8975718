"""The first path a newcomer takes: register, read themself, connect a socket."""

from __future__ import annotations


async def test_register_me_and_socket(api, make_user, sockets):
    alice = await make_user()
    status, body = await api.get("/auth/me", token=alice.token)
    assert status == 200 and body["data"]["username"] == alice.username
    sock = await sockets(alice.token)
    (event,) = await sock.seen.wait_for("authenticated")
    assert event["user"]["id"] == alice.id
    assert event["user"]["presence"] == "online"
    answer = await sock.call("update_status", {"status": "busy"})
    assert answer == {"success": True, "data": {"status": "busy", "updatedAt": answer["data"]["updatedAt"]}}
