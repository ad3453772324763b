"""What travels over the HTTP server: a parsed request, a response, and the routes that answer
requests beyond the probes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # names lower-cased
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


#: A handler for paths beyond the probes: a Response, or None when the path is not its own.
Route = Callable[[Request], Response | None]


@dataclass(frozen=True, slots=True)
class BodyRoute:
    """A path that takes POSTed bodies of up to `max_body` bytes (Content-Length only),
    answered by `handle` on the server's loop."""

    path: str
    max_body: int
    handle: Callable[[Request], Awaitable[Response]]
    #: told the status of each request the server refused without calling `handle` (a wrong
    #: method, no or a bad Content-Length, too large; a body POSTed to another path: 404)
    refused: Callable[[int], None] = lambda status: None


#: the reason phrase of each status the server sends
REASONS = {200: "OK", 202: "Accepted", 302: "Found", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
           413: "Content Too Large",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           503: "Service Unavailable"}
PLAIN = "text/plain; charset=utf-8"


def parse_head(head: bytes) -> Request | None:
    """The request line and headers, or None when they are not HTTP/1.x."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        return None
    if not version.startswith("HTTP/1."):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            return None
        headers[name.strip().lower()] = value.strip()
    path, _, query = target.partition("?")
    if version == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
        headers.setdefault("connection", "close")
    return Request(method, path, query, headers)
