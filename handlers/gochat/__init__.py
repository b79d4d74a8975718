"""The Go Chat Web door: REST under `/api` and a plain WebSocket at `/ws` (`docs/gochat.md`).

Adapters only: they load input with `schemas.gochat`, call the same services as
`/api/v1` and Socket.IO, and shape the answer; no rule lives here.
"""
