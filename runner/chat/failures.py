"""What a failed HTTP exchange means: every httpx and aiohttp exception class, named, with its kind.

httpx's own transports (a MockTransport in tests, any a caller passes) raise httpx's classes;
the production transport (transport.py) lets aiohttp's through as they are, so both libraries'
classes are listed. There is no catch-all: tests/test_client.py lists
every exception class both libraries define and fails on one missing here (a library upgrade
that adds a class must decide its kind). A class is looked up along its MRO, so at run time a new
subclass still gets its parent's kind.
"""

from __future__ import annotations

import socket
from enum import Enum

import aiohttp
import httpx
from aiohttp import client_exceptions


class Failure(Enum):
    UNREACHABLE = "unreachable"  # nothing answered: refused, no such host; a configuration stop at startup
    TIMEOUT = "timeout"  # retried
    CONNECTION = "connection"  # dropped, reset, cut off mid-body: retried
    PROTOCOL = "protocol"  # the server broke HTTP (or answered with a redirect we do not follow): retried
    CONFIGURATION = "configuration"  # OPENROUTER_BASE_URL cannot be used: the run stops
    MISUSE = "misuse"  # raised only by APIs this client never calls: a bug of ours, raised as it is


FAILURES: dict[type[BaseException], Failure] = {
    # httpx: the tree in httpx/_exceptions.py
    httpx.HTTPError: Failure.CONNECTION,
    httpx.RequestError: Failure.CONNECTION,
    httpx.TransportError: Failure.CONNECTION,
    httpx.TimeoutException: Failure.TIMEOUT,
    httpx.ConnectTimeout: Failure.TIMEOUT,
    httpx.ReadTimeout: Failure.TIMEOUT,
    httpx.WriteTimeout: Failure.TIMEOUT,
    httpx.PoolTimeout: Failure.TIMEOUT,
    httpx.NetworkError: Failure.CONNECTION,
    httpx.ConnectError: Failure.UNREACHABLE,
    httpx.ReadError: Failure.CONNECTION,
    httpx.WriteError: Failure.CONNECTION,
    httpx.CloseError: Failure.CONNECTION,
    httpx.ProtocolError: Failure.PROTOCOL,
    httpx.LocalProtocolError: Failure.PROTOCOL,
    httpx.RemoteProtocolError: Failure.PROTOCOL,
    httpx.ProxyError: Failure.CONNECTION,
    httpx.UnsupportedProtocol: Failure.CONFIGURATION,
    httpx.DecodingError: Failure.PROTOCOL,
    httpx.TooManyRedirects: Failure.PROTOCOL,
    httpx.HTTPStatusError: Failure.MISUSE,  # raise_for_status
    httpx.InvalidURL: Failure.CONFIGURATION,
    httpx.CookieConflict: Failure.MISUSE,  # cookies are never read
    httpx.StreamError: Failure.MISUSE,  # reading a body twice, or before it was read
    httpx.StreamConsumed: Failure.MISUSE,
    httpx.StreamClosed: Failure.MISUSE,
    httpx.ResponseNotRead: Failure.MISUSE,
    httpx.RequestNotRead: Failure.MISUSE,
    # aiohttp: the production transport's, as aiohttp raises them
    aiohttp.ClientError: Failure.CONNECTION,
    aiohttp.ClientConnectionError: Failure.CONNECTION,
    aiohttp.ClientConnectionResetError: Failure.CONNECTION,
    aiohttp.ClientOSError: Failure.CONNECTION,
    aiohttp.ClientConnectorError: Failure.UNREACHABLE,
    aiohttp.ClientConnectorDNSError: Failure.UNREACHABLE,
    aiohttp.ClientProxyConnectionError: Failure.UNREACHABLE,
    aiohttp.ClientSSLError: Failure.UNREACHABLE,
    aiohttp.ClientConnectorSSLError: Failure.UNREACHABLE,
    aiohttp.ClientConnectorCertificateError: Failure.UNREACHABLE,
    client_exceptions.UnixClientConnectorError: Failure.UNREACHABLE,  # not exported by aiohttp
    aiohttp.ServerConnectionError: Failure.CONNECTION,
    aiohttp.ServerDisconnectedError: Failure.CONNECTION,
    aiohttp.ServerFingerprintMismatch: Failure.CONNECTION,
    aiohttp.ServerTimeoutError: Failure.TIMEOUT,
    aiohttp.ConnectionTimeoutError: Failure.TIMEOUT,
    aiohttp.SocketTimeoutError: Failure.TIMEOUT,
    aiohttp.ClientPayloadError: Failure.CONNECTION,
    aiohttp.UploadAbortedError: Failure.CONNECTION,
    aiohttp.ClientResponseError: Failure.PROTOCOL,
    aiohttp.ClientHttpProxyError: Failure.CONNECTION,
    aiohttp.ContentTypeError: Failure.MISUSE,  # ClientResponse.json
    aiohttp.WSServerHandshakeError: Failure.MISUSE,  # websockets
    aiohttp.TooManyRedirects: Failure.PROTOCOL,
    aiohttp.RedirectClientError: Failure.PROTOCOL,
    aiohttp.InvalidUrlRedirectClientError: Failure.PROTOCOL,
    aiohttp.NonHttpUrlRedirectClientError: Failure.PROTOCOL,
    aiohttp.InvalidURL: Failure.CONFIGURATION,
    aiohttp.InvalidUrlClientError: Failure.CONFIGURATION,
    aiohttp.NonHttpUrlClientError: Failure.CONFIGURATION,
    # the standard library, under both transports, and the client's own deadline
    TimeoutError: Failure.TIMEOUT,
    ConnectionRefusedError: Failure.UNREACHABLE,
    socket.gaierror: Failure.UNREACHABLE,
    OSError: Failure.CONNECTION,
}
HANDLED = tuple(FAILURES)  # what _send catches: exactly the classes above


class TransportFailure(Exception):
    """One attempt failed without an answer worth classifying (or with a status worth retrying)."""

    def __init__(
        self, description: str, failure: Failure, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(description)
        self.description = description
        self.failure = failure
        self.status = status
        self.retry_after = retry_after


def failure_of(exc: BaseException) -> Failure:
    """The kind of the first class in the exception's MRO that the table names.

    A transport that wraps a refused connection in another class (httpx-aiohttp reports it as
    ConnectTimeout) keeps the cause: a cause that says nothing answers wins over the class.
    """
    kind = next(FAILURES[cls] for cls in type(exc).__mro__ if cls in FAILURES)
    cause = exc.__cause__
    if isinstance(cause, HANDLED) and failure_of(cause) is Failure.UNREACHABLE:
        return Failure.UNREACHABLE
    return kind


def describe(exc: BaseException, failure: Failure, timeout_s: float) -> str:
    """The failure in a line, as the run's log and final error say it."""
    if failure is Failure.UNREACHABLE:
        cause = exc.__cause__ if isinstance(exc, httpx.HTTPError) and exc.__cause__ is not None else exc
        return unreachable_reason(cause)
    if isinstance(exc, TimeoutError) and not isinstance(exc, aiohttp.ClientError):
        return f"no reply within {timeout_s:g}s"
    if failure is Failure.TIMEOUT:
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.HTTPError) and not isinstance(exc, httpx.TransportError):
        return f"HTTP failure ({type(exc).__name__}: {exc})"
    if isinstance(exc, httpx.HTTPError):
        return f"connection failed ({type(exc).__name__}: {exc})"
    return f"connection failed: {type(exc).__name__}: {exc}"


def unreachable_reason(exc: BaseException) -> str:
    """The operating system's reason, said plainly: connection refused, or no such host."""
    cause = getattr(exc, "os_error", None) or exc  # aiohttp's connector errors wrap the OSError
    host = f" ({exc.host}:{exc.port})" if isinstance(exc, aiohttp.ClientConnectorError) else ""
    if isinstance(cause, ConnectionRefusedError):
        return f"connection refused{host}: nothing listens there"
    if isinstance(cause, socket.gaierror):
        return f"the host name does not resolve{host}: {cause.strerror or cause}"
    return f"cannot connect{host}: {cause}"
