"""Real receivers for tests: an HTTP server recording webhook posts and an SMTP server recording e-mails.

Both listen on a free loopback port, run in a background thread, and can be told to misbehave: answer an error
for the next N requests, hang past the client's timeout, or stop and start again on the same port. They know
nothing of recsys (Slack webhooks, Alertmanager's webhook receiver, any JSON POST), so any test can reuse them
through the ``webhook_receiver`` and ``smtp_receiver`` fixtures of ``tests/conftest.py``.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- HTTP ----------------------------------------------------------------------------------------------------
@dataclass
class Post:
    """One request the webhook receiver answered (or dropped: ``status`` None)."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Fault:
    kind: str  # "status" | "hang"
    count: int
    status: int = 500
    seconds: float = 0.0


class WebhookReceiver:
    """Records every POST; ``posts`` are the ones answered 2xx (delivered), ``requests`` every one seen."""

    def __init__(self, port: int | None = None, status: int = 200) -> None:
        self.port = port or free_port()
        self.status = status
        self.requests: list[Post] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def posts(self) -> list[Post]:
        with self._lock:
            return [p for p in self.requests if p.status is not None and p.status < 300]

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer ``status`` to the next ``count`` requests."""
        with self._lock:
            self._faults.append(_Fault("status", count, status=status))

    def hang_next(self, count: int, seconds: float) -> None:
        """Hold the next ``count`` requests ``seconds`` (past the client's timeout), then drop them unanswered."""
        with self._lock:
            self._faults.append(_Fault("hang", count, seconds=seconds))

    def _next_fault(self) -> _Fault | None:
        with self._lock:
            while self._faults and self._faults[0].count <= 0:
                self._faults.pop(0)
            if not self._faults:
                return None
            self._faults[0].count -= 1
            return self._faults[0]

    def _record(self, post: Post) -> None:
        with self._lock:
            self.requests.append(post)
            self._lock.notify_all()

    def wait_for(self, n: int, timeout: float = 30.0) -> list[Post]:
        """Block until ``n`` posts were delivered (or ``timeout`` passed); the delivered posts."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len([p for p in self.requests if p.status is not None and p.status < 300]) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
        return self.posts

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                fault = receiver._next_fault()
                if fault is not None and fault.kind == "hang":
                    receiver._record(Post(self.path, headers, body, None))
                    time.sleep(fault.seconds)
                    self.close_connection = True
                    return
                status = fault.status if fault is not None else receiver.status
                receiver._record(Post(self.path, headers, body, status))
                payload = b"ok" if status < 300 else b"receiver fault"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def start(self) -> WebhookReceiver:
        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._server = Server(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name=f"webhook-receiver-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (a client then gets 'connection refused'); ``start()`` listens again on the same port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- TLS -----------------------------------------------------------------------------------------------------
def self_signed_cert(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` (and localhost) and its key, as PEM files: (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host)),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# -- SMTP ----------------------------------------------------------------------------------------------------
@dataclass
class Mail:
    """One accepted e-mail: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    authenticated_as: str | None = None
    tls: bool = False

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        return "" if body is None else str(body.get_content())  # type: ignore[attr-defined]

    @property
    def text(self) -> str:
        return self.part("plain")

    @property
    def html(self) -> str:
        return self.part("html")


@dataclass
class SmtpReceiver:
    """An aiosmtpd server recording every message it accepts.

    ``security``: ``none`` (plain), ``starttls`` (offered and required before MAIL) or ``ssl`` (TLS from the
    first byte); ``cert``/``key`` are needed for the TLS modes (see :func:`self_signed_cert`). With ``user`` and
    ``password`` set, AUTH is required (after the upgrade with ``starttls``; at once otherwise, a test-only laxity).
    """

    security: str = "none"
    cert: Path | None = None
    key: Path | None = None
    user: str | None = None
    password: str | None = None
    port: int = field(default_factory=free_port)
    mails: list[Mail] = field(default_factory=list)
    _fail: list[tuple[int, str]] = field(default_factory=list)
    _controller: Any = None
    _lock: threading.Condition = field(default_factory=threading.Condition)

    def fail_next(self, count: int, code: int = 451, text: str = "4.3.0 try again later") -> None:
        """Answer the next ``count`` DATA commands with ``code`` (4xx: transient, 5xx: permanent)."""
        with self._lock:
            self._fail.extend([(code, text)] * count)

    def wait_for(self, n: int, timeout: float = 30.0) -> list[Mail]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.mails) < n and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)
            return list(self.mails)

    def _tls_context(self) -> ssl.SSLContext:
        assert self.cert is not None and self.key is not None, "a TLS mode needs cert and key"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx

    def start(self) -> SmtpReceiver:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd)
                with receiver._lock:
                    if receiver._fail:
                        code, text = receiver._fail.pop(0)
                        return f"{code} {text}"
                message = email.message_from_bytes(envelope.original_content or envelope.content,
                                                   policy=email.policy.default)
                auth = session.auth_data
                login = auth.login.decode() if isinstance(auth, LoginPassword) else None
                tls = session.ssl is not None or receiver.security == "ssl"
                with receiver._lock:
                    receiver.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message,  # type: ignore[arg-type]
                                               login, tls))
                    receiver._lock.notify_all()
                return "250 OK"

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
            ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == receiver.user
                  and auth_data.password.decode() == receiver.password)
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

        kwargs: dict[str, Any] = {}
        if self.security == "starttls":
            kwargs.update(tls_context=self._tls_context(), require_starttls=True)
        if self.user is not None:
            kwargs.update(authenticator=authenticator, auth_required=True,
                          auth_require_tls=self.security == "starttls")
        ssl_context = self._tls_context() if self.security == "ssl" else None
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, ssl_context=ssl_context,
                                      server_hostname="127.0.0.1", **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
