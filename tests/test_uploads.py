"""`/uploads` over REST: multipart in, exact bytes out, safe headers, and the size limit enforced while streaming."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import aiohttp
import pytest

from server.keys import SERVICES
from tests.conftest import register
from tests.rest_support import assert_error, form, raw, running

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
UPLOAD_KEYS = {"id", "url", "filename", "size", "mimeType", "createdAt"}
BOUNDARY = "----whatschat-test-boundary"


async def upload(api, token: str | None, data) -> tuple[int, dict]:
    return await api.post("/uploads", token=token, data=data)


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes, dict]:
    async with session.get(url) as response:
        return response.status, await response.read(), dict(response.headers)


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def uploads_root(server) -> Path:
    return server.app[SERVICES].uploads.root


# storing and serving


async def test_upload_answers_201_and_serves_the_exact_bytes(api, server, make_user):
    user = await make_user()
    status, body = await upload(api, user.token, form(PNG, purpose="avatar"))
    assert status == 201, body
    data = body["data"]
    assert set(data) >= UPLOAD_KEYS
    assert data["filename"] == "pic.png" and data["size"] == len(PNG) and data["mimeType"] == "image/png"
    assert data["url"] == f"/api/v1/uploads/{data['id']}"
    assert data["createdAt"].endswith("Z")

    status, content, headers = await fetch(api.session, server.url + data["url"])  # no token needed
    assert status == 200
    assert content == PNG
    assert headers["Content-Type"] == "image/png"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Disposition"].startswith("inline")
    assert len(files_under(uploads_root(server))) == 1


async def test_purpose_may_come_after_the_file_and_defaults_to_message(api, make_user):
    user = await make_user()
    data = aiohttp.FormData()
    data.add_field("file", io.BytesIO(PNG), filename="team.png", content_type="image/png")
    data.add_field("purpose", "group")
    status, body = await upload(api, user.token, data)
    assert status == 201, body
    assert body["data"]["purpose"] == "group"
    status, body = await upload(api, user.token, form(b"hello", "note.txt", "text/plain"))
    assert status == 201 and body["data"]["purpose"] == "message"


async def test_an_avatar_or_group_picture_must_be_an_image_and_nothing_stays_on_disk(server, api, make_user):
    user = await make_user()
    for purpose in ("avatar", "group"):
        data = aiohttp.FormData()
        data.add_field("purpose", purpose)
        data.add_field("file", io.BytesIO(b"hello"), filename="note.txt", content_type="text/plain")
        status, body = await upload(api, user.token, data)
        assert status == 422, body
        assert body["error"]["details"] == {"file": [f"A {purpose} must be an image."]}
    assert files_under(uploads_root(server)) == []


@pytest.mark.parametrize(
    ("content", "filename", "content_type"),
    [
        (b"<html><script>alert(document.cookie)</script></html>", "evil.html", "text/html"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "evil.svg", "image/svg+xml"),
        (
            b'<?xml version="1.0"?><x:script xmlns:x="http://www.w3.org/1999/xhtml">alert(1)</x:script>',
            "e.xml",
            "text/xml",
        ),
        (b"alert(document.cookie)", "evil.js", "text/javascript"),
        (b"\x00\x01 unknown", "blob.bin", "application/x-whatever"),
    ],
    ids=["html", "svg", "xml", "javascript", "unknown"],
)
async def test_active_types_keep_their_type_but_download_sandboxed(
    api, server, make_user, content, filename, content_type
):
    """A type a browser would render, or one we do not know, comes back as a sandboxed attachment."""
    user = await make_user()
    status, body = await upload(api, user.token, form(content, filename, content_type))
    assert status == 201, body
    status, served, headers = await fetch(api.session, server.url + body["data"]["url"])
    assert status == 200 and served == content
    assert headers["Content-Type"].split(";")[0] == content_type
    assert headers["Content-Disposition"].startswith("attachment")
    assert headers["X-Content-Type-Options"] == "nosniff"
    policy = [p.strip() for p in headers["Content-Security-Policy"].split(";")]
    assert "sandbox" in policy and "default-src 'none'" in policy, policy


async def test_text_comes_back_as_text(api, server, make_user):
    """Not as `application/octet-stream`: a client can show it, and nosniff keeps it text."""
    user = await make_user()
    status, body = await upload(api, user.token, form(b"hello\n", "note.txt", "text/plain; charset=utf-8"))
    assert status == 201, body
    assert body["data"]["mimeType"] == "text/plain"
    status, content, headers = await fetch(api.session, server.url + body["data"]["url"])
    assert status == 200 and content == b"hello\n"
    assert headers["Content-Type"] == "text/plain"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Disposition"].startswith("inline")


async def test_a_type_is_guessed_from_the_name_when_the_client_sends_none(api, server, make_user):
    user = await make_user()
    status, body = await upload(api, user.token, form(PNG, "guess.png", "application/octet-stream"))
    assert status == 201, body
    assert body["data"]["mimeType"] == "image/png"
    status, content, headers = await fetch(api.session, server.url + body["data"]["url"])
    assert content == PNG and headers["Content-Type"] == "image/png"


# refusals


async def test_bad_uploads_are_refused_and_leave_nothing(api, server, make_user):
    user = await make_user()
    status, body = await upload(api, user.token, form(PNG, purpose="banner"))
    assert_error(status, body, 422, "VAL_001")
    status, body = await upload(api, user.token, form(None, purpose="avatar"))
    assert_error(status, body, 422, "VAL_001")
    assert "file" in body["error"]["details"]
    status, body = await api.post("/uploads", token=user.token, json={"file": "aGVsbG8="})
    assert_error(status, body, 400, "VAL_001")
    status, body = await api.post(
        "/uploads", token=user.token, data=b"raw bytes", headers={"Content-Type": "application/octet-stream"}
    )
    assert_error(status, body, 400, "VAL_001")
    assert files_under(uploads_root(server)) == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"no boundary named"),
        (f"multipart/form-data; boundary={BOUNDARY}", b"garbage without the boundary"),
        (
            f"multipart/form-data; boundary={BOUNDARY}",
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'.encode() + PNG,
        ),
        (
            f"multipart/form-data; boundary={BOUNDARY}",
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a\r\n\xfc.png"\r\n\r\n'.encode()
            + PNG
            + f"\r\n--{BOUNDARY}--\r\n".encode(),
        ),
    ],
    ids=["no-boundary", "boundary-missing", "truncated", "broken-part-header"],
)
async def test_malformed_multipart_is_400_and_leaves_nothing(api, server, make_user, content_type, body):
    user = await make_user()
    status, answer = await api.post("/uploads", token=user.token, data=body, headers={"Content-Type": content_type})
    assert_error(status, answer, 400, "VAL_001")
    assert files_under(uploads_root(server)) == []


async def test_purpose_after_the_file_is_still_checked(api, server, make_user):
    user = await make_user()
    data = aiohttp.FormData()
    data.add_field("file", io.BytesIO(PNG), filename="pic.png", content_type="image/png")
    data.add_field("purpose", "banner")
    status, body = await upload(api, user.token, data)
    assert_error(status, body, 422, "VAL_001")
    assert files_under(uploads_root(server)) == []


async def test_upload_needs_a_token(api, server):
    status, body = await upload(api, None, form(PNG))
    assert_error(status, body, 401, "AUTH_001")
    status, body = await upload(api, "not-a-token", form(PNG))
    assert_error(status, body, 401, "AUTH_001")
    assert files_under(uploads_root(server)) == []


async def test_unknown_upload_is_404(api, server):
    for name in ("0" * 40, "nope", "..%2F..%2Fconfig.yaml"):
        answer = await raw(api.session, "GET", f"{server.api}/uploads/{name}")
        assert_error(answer.status, answer.body, 404, "RES_002")


# the size limit


async def chunked_form(size: int, chunk: int = 16 * 1024):
    """A multipart body produced piece by piece: sent chunked, with no Content-Length."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nmessage\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    sent = 0
    while sent < size:
        piece = min(chunk, size - sent)
        yield os.urandom(piece)
        sent += piece
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def test_size_limit_is_enforced_while_streaming(config):
    async with running(config.replace(uploads={"max_size": 100_000})) as (srv, api):
        user = await register(api)
        answer = await raw(
            api.session,
            "POST",
            srv.api + "/uploads",
            token=user.token,
            data=chunked_form(300_000),
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        assert_error(answer.status, answer.body, 413, "FILE_001")
        leftovers = files_under(uploads_root(srv))
        assert leftovers == [], leftovers
        # the same way, a file under the limit goes through
        answer = await raw(
            api.session,
            "POST",
            srv.api + "/uploads",
            token=user.token,
            data=chunked_form(99_000),
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        assert answer.status == 201, answer.body
        assert answer.body["data"]["size"] == 99_000
        assert len(files_under(uploads_root(srv))) == 1


async def test_a_declared_length_over_the_limit_is_refused_before_reading(config):
    async with running(config.replace(uploads={"max_size": 100_000})) as (srv, api):
        user = await register(api)
        host, port = srv.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(
                (
                    "POST /api/v1/uploads HTTP/1.1\r\n"
                    f"Host: {host}:{port}\r\n"
                    f"Authorization: Bearer {user.token}\r\n"
                    f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                    "Content-Length: 1000000000\r\n"
                    "\r\n"
                ).encode()
            )
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 10)
        finally:
            writer.close()
            await writer.wait_closed()
        assert status_line.split()[1] == b"413", status_line
        # and the JSON envelope says why
        body = b"-" * 300_000
        answer = await raw(
            api.session,
            "POST",
            srv.api + "/uploads",
            token=user.token,
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        assert_error(answer.status, answer.body, 413, "FILE_001")
        assert files_under(uploads_root(srv)) == []


async def test_default_limit_is_10_mb_and_beats_the_json_body_limit(api, server, make_user):
    assert server.app[SERVICES].uploads.max_size == 10 * 1024 * 1024
    user = await make_user()
    big = os.urandom(1_500_000)
    status, body = await upload(api, user.token, form(big, "big.bin", "application/octet-stream"))
    assert status == 201, body
    assert body["data"]["size"] == len(big)
    status, content, _ = await fetch(api.session, server.url + body["data"]["url"])
    assert status == 200 and content == big


def test_download_names_stay_ascii_in_headers_with_the_exact_name_alongside():
    from handlers.rest.messages import content_disposition

    header = content_disposition("attachment", 'récit "final".pdf')
    assert header.isascii()
    assert 'filename="r_cit _final_.pdf"' in header
    assert "filename*=UTF-8''r%C3%A9cit%20%22final%22.pdf" in header
