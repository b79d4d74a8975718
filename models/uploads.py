"""Uploaded files: streamed to disk under the size limit, served back by id.

The body never sits in memory whole: chunks go to a temporary file and the
limit is checked as they arrive, so a 10 GB upload costs the server 10 MB of
disk at most before it is refused. Ids are unguessable (time plus 64 random
bits), which is what lets `<img src>` load a file without a token.
"""

from __future__ import annotations

import mimetypes
import os
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from models.auth import Identity
from models.clock import new_id, now_iso
from models.documents import Upload
from models.errors import NotFound, PayloadTooLarge, UploadRejected, ValidationFailed
from models.ratelimit import EventBudgets
from models.store.base import Store

_MIME = re.compile(r"^[\w.+-]+/[\w.+-]+$")
_ID = re.compile(r"^[0-9a-f]{40}$")
# shown in the page: passive types, which a browser displays but never runs (with
# `nosniff` it cannot take them for another type). Anything else (HTML, SVG, XML,
# script, and every type not known here) is served as a sandboxed download: see `inline`
INLINE_TYPES = re.compile(
    r"^(image/(png|jpeg|gif|webp|avif|bmp)|audio/[\w.+-]+|video/[\w.+-]+|application/pdf|text/plain)$"
)


def clean_filename(name: str | None) -> str:
    base = os.path.basename((name or "").replace("\\", "/")).strip()
    base = re.sub(r"[\x00-\x1f\x7f\"]", "", base)[:200]
    return base or "file"


class UploadService:
    def __init__(self, store: Store, root: Path, max_size: int, budgets: EventBudgets) -> None:
        self.store = store
        self.root = root
        self.max_size = max_size
        self.budgets = budgets

    @staticmethod
    def inline(mime_type: str) -> bool:
        """Shown in the page rather than offered as a download: only the passive types.

        Anything else goes as an attachment with a sandboxing Content-Security-Policy,
        keeping its own type so a client knows what it got: the policy is what stops
        script on this origin should a browser render an active type anyway. A
        deny-list of active types would miss some, so everything not known passive
        is sandboxed. Not the passive ones: they need none, and Chrome's viewer will
        not open a sandboxed PDF.
        """
        return INLINE_TYPES.match(mime_type) is not None

    def path(self, upload_id: str) -> Path:
        return self.root / upload_id[:2] / upload_id

    async def check_budget(self, identity: Identity) -> None:
        await self.budgets.charge(identity.user.id, "uploads")

    async def stream_to_disk(
        self,
        identity: Identity,
        filename: str | None,
        content_type: str | None,
        purpose: str,
        chunks: AsyncIterator[bytes],
    ) -> Upload:
        upload_id = new_id() + secrets.token_hex(8)
        target = self.path(upload_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        size = 0
        try:
            with partial.open("wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_size:
                        raise PayloadTooLarge(f"Files are limited to {self.max_size} bytes", code="FILE_001")
                    out.write(chunk)
            if size == 0:
                raise UploadRejected("The file is empty")
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        name = clean_filename(filename)
        mime = (content_type or "").split(";")[0].strip().lower()
        if not _MIME.match(mime) or mime == "application/octet-stream":
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Upload(upload_id, identity.user.id, name, size, mime, purpose, now_iso())

    async def record(self, upload: Upload) -> None:
        """Store the upload's document once the whole request has been read.

        An avatar or a group picture is shown as an image wherever it is used, so
        those purposes take images only (the caller removes the refused file).
        """
        if upload.purpose in ("avatar", "group") and not upload.mime_type.startswith("image/"):
            raise ValidationFailed(details={"file": [f"A {upload.purpose} must be an image."]})
        await self.store.insert_upload(upload)

    async def get(self, upload_id: str) -> tuple[Upload, Path]:
        upload = await self.store.get_upload(upload_id) if _ID.match(upload_id) else None
        if upload is None or not self.path(upload_id).exists():
            raise NotFound("File not found")
        return upload, self.path(upload_id)
