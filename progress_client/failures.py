"""What went wrong with a connection, and its sentence for people.

A failed attempt (:func:`describe_failure`) or a connection that ended
(:func:`describe_close`) gets a short phrase, safe to show (a refusal's, cut to a few
words for a line on screen, by :func:`brief_failure`); :func:`is_permanent` says
whether trying again can help, :func:`retry_after` how long the server asked to wait.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidHandshake, InvalidMessage, InvalidStatus, InvalidURI
from websockets.frames import CloseCode
from websockets.http11 import Response

from progress_protocol.messages import Error, ProtocolError, decode_server_message

from .wording import describe_exception, printable

__all__ = [
    "BRIEF_PATH",
    "MAX_RETRY_AFTER",
    "NOT_TLS",
    "REFUSED",
    "REVOKED",
    "TOKEN_NEEDED",
    "TOKEN_REFUSED",
    "brief_failure",
    "describe_close",
    "describe_failure",
    "is_permanent",
    "refusal_sentence",
    "retry_after",
]

logger = logging.getLogger(__name__)

#: The longest wait a server's ``Retry-After`` can impose, in seconds: a larger value
#: (or a hostile one) is cut to it, so that a client never looks dead for long.
MAX_RETRY_AFTER = 60.0

#: The close code of a connection whose token was revoked (the server's tokens file).
REVOKED = 4401

#: The 4xx statuses that say "not now" rather than "no": they are retried.
_TRANSIENT_CLIENT_ERRORS = frozenset({408, 425, 429})


def is_permanent(exc: BaseException) -> bool:
    """Whether trying again cannot help: a bad URL, an untrusted certificate, a handshake
    answered with a plain 2xx (the URL names an HTTP endpoint, not the WebSocket), or
    one refused with a 4xx status other than 408, 425 and 429 (the server said "no":
    wrong path, token, host or request; not "not now")."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if 200 <= status < 300:
            return True
        return 400 <= status < 500 and status not in _TRANSIENT_CLIENT_ERRORS
    return isinstance(exc, InvalidURI | ssl.SSLCertVerificationError)


def retry_after(exc: BaseException) -> float | None:
    """The wait a refused handshake's ``Retry-After: <seconds>`` asks for, at most
    :data:`MAX_RETRY_AFTER`; None without one (an HTTP date is not read)."""
    if not isinstance(exc, InvalidStatus):
        return None
    values = exc.response.headers.get_all("Retry-After")
    if len(values) != 1:
        return None
    value = values[0].strip()
    # Digits only (int() would take "1_0", " +5" or Unicode digits), and few of them.
    if not (value.isascii() and value.isdigit() and len(value) <= 10):
        return None
    return min(float(value), MAX_RETRY_AFTER)


def refusal_sentence(response: Response) -> str | None:
    """The server's sentence in a refused handshake's body: its protocol ``error``
    object, read by the shared (bounded, printable-only) decoder; None for any other
    body."""
    if not response.body:
        return None
    try:
        message = decode_server_message(bytes(response.body).decode())
    except (UnicodeDecodeError, ProtocolError):
        return None
    return message.message if isinstance(message, Error) else None


#: What OpenSSL says when the other end answers a TLS handshake with plain HTTP.
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
)
NOT_TLS = "the TLS handshake failed: the server does not speak TLS on this port (is it ws://?)"


#: The sentences of a refused token, and of a token missing.
TOKEN_REFUSED = "the server refused the token (HTTP 401)"
TOKEN_NEEDED = "the server needs a token (HTTP 401): use --token or PROGRESS_TOKEN"
#: How a refusal's sentence begins: its status, then maybe the server's sentence.
REFUSED = "the server refused the connection"
_REFUSED_STATUS = re.compile(re.escape(REFUSED) + r" \(HTTP (\d{3})\b")
_NOT_WEBSOCKET = re.compile(r"the server answered HTTP (\d{3}) instead of opening a WebSocket")
#: The most of a URL's path a brief refusal quotes.
BRIEF_PATH = 32


def brief_failure(sentence: str, url: str) -> str:
    """A refused handshake's sentence (:func:`describe_failure`'s) in a few words, for a
    line on screen: "nothing at /wrong (HTTP 404)", "token not accepted
    (HTTP 401)", "a token is needed (HTTP 401)", "refused (HTTP 403)". Any
    other sentence is short already, and is returned as it is."""
    if sentence == TOKEN_REFUSED:
        return "token not accepted (HTTP 401)"
    if sentence == TOKEN_NEEDED:
        return "a token is needed (HTTP 401)"
    if match := _NOT_WEBSOCKET.match(sentence):
        return f"not a WebSocket endpoint (HTTP {match[1]})"
    if match := _REFUSED_STATUS.match(sentence):
        if match[1] == "404":
            path = printable(urlsplit(url).path or "/", limit=BRIEF_PATH)
            return f"nothing at {path} (HTTP 404)"
        return f"refused (HTTP {match[1]})"
    return sentence


def describe_failure(exc: BaseException, url: str, *, token: str | None = None) -> str:
    """A short phrase, safe to show, saying why a connection attempt failed."""
    return printable(_describe_failure(exc, url, token=token))


def _describe_failure(exc: BaseException, url: str, *, token: str | None) -> str:
    host = urlsplit(url).hostname or url
    secure = url.startswith("wss:")
    match exc:
        case InvalidStatus(response=response) if response.status_code == 401:
            return TOKEN_REFUSED if token else TOKEN_NEEDED
        case InvalidStatus(response=response) if 200 <= response.status_code < 300:
            return (
                f"the server answered HTTP {response.status_code} instead of opening a "
                "WebSocket: is the path in the URL the WebSocket endpoint (/progress)?"
            )
        case InvalidStatus(response=response):
            status = f"HTTP {response.status_code}"
            sentence = refusal_sentence(response)
            if sentence is None:
                # Not our server's JSON (a proxy, another server): its status line.
                phrase = printable(response.reason_phrase, limit=64)
                status = f"{status} {phrase}".rstrip()
                return f"{REFUSED} ({status})"
            return f"{REFUSED} ({status}): {sentence}"
        case ssl.SSLCertVerificationError():
            return f"the server's certificate is not trusted ({exc.verify_message}); see --cafile"
        case ssl.SSLError() if exc.reason in _NOT_TLS_REASONS or isinstance(exc, ssl.SSLEOFError):
            return NOT_TLS
        case ssl.SSLError():
            return f"the TLS handshake failed ({exc.reason or exc})"
        case ConnectionResetError() if secure:
            # Raised by the TLS handshake (asyncio's sslproto) when the server hangs up on
            # it, as a plain WebSocket server does; a refused TCP connection is another
            # error, and one reset later, in the HTTP upgrade, is an InvalidMessage.
            return NOT_TLS
        case InvalidMessage() if not secure and isinstance(exc.__cause__, EOFError):
            return (
                "the server closed the connection before answering the handshake "
                "(is it a wss:// port, or is the server out of resources?)"
            )
        case InvalidURI():
            return f"invalid URL {url}"
        case ConnectionRefusedError():
            return "connection refused"
        case socket.gaierror():
            return f"cannot resolve {host}"
        case TimeoutError():
            return "timed out"
        case InvalidHandshake():
            return f"the handshake failed: {exc}"
        case OSError(strerror=str(reason)):
            return reason.lower()
    logger.warning("unexpected connection failure", exc_info=exc)
    return describe_exception(exc)


def describe_close(connection: ClientConnection) -> str:
    """A short phrase, safe to show, saying why a live connection ended."""
    code = connection.close_code
    reason = connection.close_reason
    if code is None or code == CloseCode.ABNORMAL_CLOSURE:
        # Our side gave up: keepalive pings went unanswered, or the TCP connection broke.
        received = connection.protocol.close_rcvd
        if received is None and connection.protocol.close_sent is not None:
            sent = connection.protocol.close_sent
            if sent.code == CloseCode.INTERNAL_ERROR:
                return "the server stopped answering pings"
        return "the connection was lost"
    if code == CloseCode.GOING_AWAY:
        return "the server is going away (1001)"
    if code == CloseCode.MESSAGE_TOO_BIG:
        return "the server sent a message over the size this client accepts (1009)"
    if code == CloseCode.NORMAL_CLOSURE:
        return "closed (1000)"
    if code == REVOKED:
        return "the server revoked this client's token (4401): ask for a new one"
    # The reason is the server's text: at most 123 bytes, but any characters.
    return printable(f"closed by the server ({code}{': ' + reason if reason else ''})")
