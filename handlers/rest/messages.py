"""REST adapters for `/messages` and `/uploads`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from handlers.rest.apidoc import doc
from handlers.rest.auth import API
from handlers.rest.common import caller, envelope, read_body, read_query, services
from models.documents import Upload
from models.errors import BadRequest, PayloadTooLarge, ValidationFailed
from schemas import messages as s
from schemas.common import load
from schemas.events import MessageDeleted
from schemas.messages import MessageOut
from schemas.payloads import dump_one, dump_page
from schemas.responses import MessagePage
from schemas.uploads import UploadOut, UploadPurpose

_pagination = s.MessagePaginationOut()
_deleted = MessageDeleted()
_history_query = s.HistoryQuery()  # built once: a schema instance costs more to make than to use
_upload_out = UploadOut()
CHUNK = 64 * 1024


@doc(summary="Message history, newest first", tag="messages", query=s.HistoryQuery, data=MessagePage)
async def history(request: web.Request) -> web.Response:
    identity = await caller(request)
    query = read_query(request, _history_query)
    views, total, more = await services(request).messages.history(identity, request.match_info["id"], query)
    limit = query["limit"]
    pagination: dict[str, Any] = {"page": None, "limit": limit, "total": total, "pages": None, "hasMore": more}
    if not (query.get("before") or query.get("after")):  # a page by number: say which, of how many
        pagination.update(page=query["page"], pages=(total + limit - 1) // limit)
    return envelope({"messages": dump_page(views), "pagination": _pagination.dump(pagination)})


@doc(summary="Send a message", tag="messages", body=s.SendMessage, data=MessageOut, status=201, also=(200,))
async def send(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, s.SendMessage())
    view, created = await services(request).messages.send(identity, body)
    message = "Message sent" if created else "Message already sent"
    return envelope(dump_one(view), message, status=201 if created else 200)


@doc(summary="Edit your message", tag="messages", body=s.EditMessage, data=MessageOut)
async def edit(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_body(request, s.EditMessage())
    view = await services(request).messages.edit(identity, request.match_info["id"], body)
    return envelope(dump_one(view), "Message updated")


@doc(summary="Delete a message (leaves a tombstone)", tag="messages", data=MessageDeleted)
async def delete(request: web.Request) -> web.Response:
    identity = await caller(request)
    deletion = await services(request).messages.delete(identity, request.match_info["id"])
    return envelope(_deleted.dump(deletion), "Message deleted")


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


@doc(summary="Upload a file (multipart, streamed, 10 MB)", tag="uploads", data=UploadOut, shape="multipart", status=201)
async def upload(request: web.Request) -> web.Response:
    return envelope(_upload_out.dump(await receive_upload(request)), "File uploaded", status=201)


async def receive_upload(request: web.Request) -> Upload:
    """`multipart/form-data` with `file` (and `purpose`, before or after it), streamed to disk and recorded.

    Both doors' upload endpoints read their request here.
    """
    identity = await caller(request)
    uploads = services(request).uploads
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("Content-Type must be multipart/form-data")
    if request.content_length is not None and request.content_length > uploads.max_size + 64 * 1024:
        raise PayloadTooLarge(f"Files are limited to {uploads.max_size} bytes", code="FILE_001")
    await uploads.check_budget(identity)
    purpose, saved = "message", None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "purpose":
                purpose = load(UploadPurpose(), {"purpose": (await part.text())[:32]})["purpose"]
            elif part.name == "file" and saved is None:
                saved = await uploads.stream_to_disk(
                    identity, part.filename, part.headers.get("Content-Type"), purpose, _chunks(part)
                )
            else:
                await part.release()
        if saved is None:
            raise ValidationFailed(details={"file": ["Missing data for required field."]})
        saved.purpose = purpose  # the form may name it before or after the file
        await uploads.record(saved)
    except BaseException as exc:
        if saved is not None:  # a file already on disk must not outlive a refused request
            uploads.path(saved.id).unlink(missing_ok=True)
        if isinstance(exc, ValueError | HttpProcessingError):  # what aiohttp raises for a broken multipart body
            raise BadRequest("Malformed multipart body") from None
        raise
    return saved


def content_disposition(disposition: str, filename: str) -> str:
    """An ASCII fallback name and the exact UTF-8 name (RFC 6266), so headers stay ASCII."""
    fallback = filename.encode("ascii", "replace").decode("ascii").replace("?", "_").replace('"', "_")
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


# for the files a browser could render actively: no fetches, and an opaque origin with no script
SANDBOX = "default-src 'none'; sandbox"


@doc(summary="An uploaded file", tag="uploads", shape="file", auth=False)
async def download(request: web.Request) -> web.StreamResponse:
    """The bytes with their stored type, made safe by disposition, nosniff and a sandbox, not by hiding the type.

    Both doors serve their upload URLs here.
    """
    uploads = services(request).uploads
    uploaded, path = await uploads.get(request.match_info["id"])
    inline = uploads.inline(uploaded.mime_type)
    headers = {
        "Content-Type": uploaded.mime_type,
        "Content-Disposition": content_disposition("inline" if inline else "attachment", uploaded.filename),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=31536000, immutable",
    }
    if not inline:  # everything not known passive, whatever its disposition does in a given browser
        headers["Content-Security-Policy"] = SANDBOX
    return web.FileResponse(path, headers=headers)


routes = [
    # `{id}` is the chat's id here and a message's id below: one path template, as OpenAPI requires
    web.get(f"{API}/messages/{{id}}", history, allow_head=False),
    web.post(f"{API}/messages", send),
    web.put(f"{API}/messages/{{id}}", edit),
    web.delete(f"{API}/messages/{{id}}", delete),
    web.post(f"{API}/uploads", upload),
    web.get(f"{API}/uploads/{{id}}", download),
]
