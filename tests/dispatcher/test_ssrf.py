"""The SSRF guard at delivery time: refused addresses get nothing, and the connection goes to the
address that was checked, while Host, SNI and the certificate check use the hostname."""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import make_server

from dispatcher.delivery import deliver_message
from dispatcher.errors import AddressRefused, TlsFailed
from dispatcher.transport import Transport
from shared.ssrf import check_url
from shared.webhooks import claim_due_messages
from tests.dispatcher.support import Receiver, attempts, finish_task, message, with_settings


def claim_one(runtime) -> int:
    with runtime.pool.connection() as conn:
        [message_id] = claim_due_messages(conn, limit=10, lock_s=30, settings=runtime.settings)
    return message_id


def test_private_address_is_refused_at_delivery(runtime, make_account, receiver):
    # given private targets are not allowed, and an endpoint whose name resolves to loopback
    strict = with_settings(runtime, webhook_allow_private=False)
    port = receiver.url.split(":")[2].split("/")[0]
    acct = make_account(f"http://localhost:{port}/hooks")  # stored directly, as if DNS changed
    task_id, _ = finish_task(runtime, acct.id)

    # when the message is delivered
    deliver_message(strict, claim_one(strict))

    # then nothing reached the receiver, and the attempt says why
    assert receiver.received == []
    row = message(runtime, task_id=task_id)
    [attempt] = attempts(runtime, row["id"])
    assert attempt["error_class"] == "ssrf_refused"
    assert "loopback" in attempt["error_detail"]
    assert row["status"] == "pending"


def test_connection_goes_to_the_checked_address_with_the_hostname_as_host(
    runtime, make_account, receiver
):
    # given a name that our resolver maps to the receiver's loopback address
    port = int(receiver.url.split(":")[2].split("/")[0])
    lookups: list[str] = []

    def resolver(host: str, _port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    acct = make_account(f"http://hooks.customer.test:{port}/hooks")
    finish_task(runtime, acct.id)

    # when the message is delivered through a transport using that resolver
    deliver_message(runtime, claim_one(runtime), transport=Transport(resolver=resolver))

    # then the name was resolved once, and the request reached that address with its Host
    assert lookups == ["hooks.customer.test"]
    [got] = receiver.received
    assert got.headers["Host"] == f"hooks.customer.test:{port}"


def test_an_internationalized_hostname_is_sent_as_its_ascii_form(runtime, make_account, receiver):
    # given an endpoint on an internationalized domain name, which our resolver maps to loopback
    port = int(receiver.url.split(":")[2].split("/")[0])
    acct = make_account(f"http://例え.test:{port}/hooks")
    task_id, _ = finish_task(runtime, acct.id)

    # when the message is delivered
    transport = Transport(resolver=lambda host, _port: ["127.0.0.1"])
    deliver_message(runtime, claim_one(runtime), transport=transport)

    # then the request carried the name's IDNA form as its Host, and the message is delivered
    [got] = receiver.received
    assert got.headers["Host"] == f"xn--r8jz45g.test:{port}"
    assert message(runtime, task_id=task_id)["status"] == "delivered"


def test_a_stored_url_the_http_client_cannot_parse_is_a_logged_failure(runtime, make_account):
    # given an endpoint URL with junk after its IPv6 literal, which urlsplit let through
    acct = make_account("http://[::1]x/hooks")  # stored before the API refused such URLs
    task_id, _ = finish_task(runtime, acct.id)

    # when the message is delivered
    deliver_message(runtime, claim_one(runtime))

    # then the attempt is logged as refused, and the message waits for a usable URL
    row = message(runtime, task_id=task_id)
    [attempt] = attempts(runtime, row["id"])
    assert attempt["error_class"] == "ssrf_refused"
    assert "malformed" in attempt["error_detail"]
    assert row["status"] == "pending" and row["attempts"] == 1


def test_rebinding_to_a_private_address_is_refused_before_connecting(receiver):
    # given a URL the API accepted while its name resolved to a public address
    port = int(receiver.url.split(":")[2].split("/")[0])
    url = f"http://rebind.test:{port}/hooks"
    check_url(url, False, resolver=lambda host, _port: ["93.184.215.14"])

    # when the name resolves to loopback by the time the dispatcher sends
    transport = Transport(resolver=lambda host, _port: ["127.0.0.1"])

    # then the dispatcher refuses before connecting: it checks what it connects to
    with pytest.raises(AddressRefused, match="loopback"):
        transport.post(url, b"{}", {}, timeout_s=2, allow_private=False)
    assert receiver.received == []


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[Receiver, int, Path]]:
    """A receiver with a certificate for hooks.customer.test, on a loopback port."""
    cert, key = _certificate(tmp_path, "hooks.customer.test")
    recv = Receiver()
    server = make_server("127.0.0.1", 0, recv, threaded=True, ssl_context=(str(cert), str(key)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield recv, server.server_port, cert
    server.shutdown()
    thread.join(timeout=5)


def test_tls_checks_the_hostname_while_connecting_to_the_pinned_address(tls_receiver):
    # given an HTTPS receiver whose certificate names hooks.customer.test, on 127.0.0.1
    recv, port, ca = tls_receiver
    transport = Transport(ca_certs=str(ca), resolver=lambda host, _port: ["127.0.0.1"])

    # when we post to that name / then TLS verifies against the name and the post succeeds
    ok = transport.post(
        f"https://hooks.customer.test:{port}/hooks", b"{}", {}, timeout_s=3, allow_private=True
    )
    assert ok.status == 200
    assert recv.received[0].headers["Host"] == f"hooks.customer.test:{port}"

    # when we post to another name pinned to the same address / then the certificate check fails
    with pytest.raises(TlsFailed):
        transport.post(
            f"https://other.customer.test:{port}/hooks", b"{}", {}, timeout_s=3, allow_private=True
        )
    assert len(recv.received) == 1


def test_ipv6_literal_hosts_are_checked(receiver):
    # given a URL with a loopback IPv6 literal / when posted without private targets allowed
    transport = Transport()
    with pytest.raises(AddressRefused):
        transport.post("http://[::1]:9/hooks", b"{}", {}, timeout_s=1, allow_private=False)
    assert ipaddress.ip_address("::1").is_loopback


def test_tls_to_an_internationalized_hostname_checks_its_ascii_form(tmp_path):
    # given an HTTPS receiver whose certificate names bücher.test, as certificates do: xn--
    cert, key = _certificate(tmp_path, "xn--bcher-kva.test")
    recv = Receiver()
    server = make_server("127.0.0.1", 0, recv, threaded=True, ssl_context=(str(cert), str(key)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # when we post to the name as the account wrote it
        transport = Transport(ca_certs=str(cert), resolver=lambda host, _port: ["127.0.0.1"])
        url = f"https://bücher.test:{server.server_port}/hooks"
        ok = transport.post(url, b"{}", {}, timeout_s=3, allow_private=True)
    finally:
        server.shutdown()
        thread.join(timeout=5)

    # then the certificate check passed, and the Host named the same ASCII form
    assert ok.status == 200
    assert recv.received[0].headers["Host"] == f"xn--bcher-kva.test:{server.server_port}"


def test_an_unforeseen_failure_of_an_attempt_is_a_counted_attempt(runtime, make_account, receiver):
    # given a message whose attempt fails in a way no error class foresees (here the name's
    # lookup breaks with an error of its own)
    port = int(receiver.url.split(":")[2].split("/")[0])
    acct = make_account(f"http://hooks.customer.test:{port}/hooks")
    task_id, _ = finish_task(runtime, acct.id)

    def broken(host: str, _port: int) -> list[str]:
        raise RuntimeError("the resolver broke")

    # when it is delivered
    deliver_message(runtime, claim_one(runtime), transport=Transport(resolver=broken))

    # then the attempt is logged and counted, and the message waits for its next try (it was
    # left claimed and uncounted, to be sent again without end)
    row = message(runtime, task_id=task_id)
    [attempt] = attempts(runtime, row["id"])
    assert attempt["error_class"] == "error"
    assert attempt["error_detail"] == "RuntimeError: the resolver broke"
    assert row["status"] == "pending" and row["attempts"] == 1
    assert row["next_attempt_at"] > attempt["attempted_at"]
