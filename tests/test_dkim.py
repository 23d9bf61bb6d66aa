"""DKIM: every message whose From domain has a key leaves signed (relaxed/relaxed), and the
signature verifies with dkimpy against the DNS record `dkim keygen` prints; a bad key
stops the command at start; a reseller without a key goes From the fallback sender.

The DNS answer is given to the verifier (`dnsfunc`): no test asks a real resolver.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import dkim
import pytest
from sqlalchemy import Engine, insert

from testkit.cli import run_cli
from testkit.outbox import queue_notice
from testkit.smtp import smtp_server
from worker.config.policy import Policy, build_policy
from worker.config.settings import Settings
from worker.db.engine import make_engine, upgrade
from worker.db.schema import RESELLERS
from worker.errors import ConfigError
from worker.mail.dkim import DkimKey, Signer, dns_record, generate, read_key, record_text
from worker.mail.drain import deliver_due
from worker.mail.transports.choice import open_mailer
from worker.mail.transports.memory import MemoryMailer, Script

T = datetime(2027, 3, 10, 10, 0, tzinfo=UTC)  # inside the send window in Paris
A, B = "paul@dupont.example", "marie@dupont.example"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One RSA 2048 key for nuage.example, one Ed25519 key for relay.example."""
    folder = tmp_path_factory.mktemp("dkim")
    paths = {"rsa": folder / "nuage.key", "ed25519": folder / "relay.key"}
    paths["rsa"].write_bytes(generate("rsa"))
    paths["ed25519"].write_bytes(generate("ed25519"))
    return paths


def policy_with(keys: dict[str, Path], **mail: str) -> Policy:
    return build_policy({
        "dkim": [{"domain": "nuage.example", "selector": "rw2027",
                  "key_file": str(keys["rsa"])},
                 {"domain": "relay.example", "selector": "ed1",
                  "key_file": str(keys["ed25519"])}],
        "mail": mail})


def dns_of(*loaded: DkimKey) -> Callable[..., bytes | None]:
    """The verifier's DNS: each key's TXT record at SELECTOR._domainkey.DOMAIN."""
    records = {f"{k.selector}._domainkey.{k.domain}.".encode(): record_text(k).encode()
               for k in loaded}

    def answer(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)
    return answer


def verifies(data: bytes, dns: Callable[..., bytes | None]) -> bool:
    return bool(dkim.verify(data, dnsfunc=dns))


def loaded(keys: dict[str, Path]) -> tuple[DkimKey, DkimKey]:
    return (read_key(keys["rsa"], "nuage.example", "rw2027"),
            read_key(keys["ed25519"], "relay.example", "ed1"))


def deliver(engine: Engine, policy: Policy, mailer: Any, moment: datetime = T) -> Any:
    return deliver_due(engine, policy, Settings(), moment, clock=lambda: moment, mailer=mailer)


def test_a_message_sent_through_smtp_carries_a_signature_that_verifies(
    engine: Engine, keys: dict[str, Path]
) -> None:
    """Signed at hand-over (rsa-sha256, relaxed/relaxed) over the headers the README lists;
    verified by dkimpy against the published record; a tampered body fails."""
    queue_notice(engine, recipients=(A, B))
    with smtp_server() as server:
        counts = deliver(engine, policy_with(keys), open_mailer(Settings(smtp_url=server.url())))
        (received,) = server.received
    assert counts.as_dict() == {"sent": 1}
    signature = message_from_bytes(received.data)["DKIM-Signature"]
    tags = dict(re.findall(r"(\w+)=([^;]*)", re.sub(r"\s+", "", signature)))
    assert (tags["a"], tags["c"], tags["d"], tags["s"]) == (
        "rsa-sha256", "relaxed/relaxed", "nuage.example", "rw2027")
    assert {"from", "to", "subject", "date", "message-id", "reply-to"} <= set(
        tags["h"].split(":"))
    dns = dns_of(*loaded(keys))
    assert verifies(received.data, dns)
    head, body = received.data.split(b"\r\n\r\n", 1)
    tampered = body.replace(b"Nuage", b"Nuag3", 1)
    assert tampered != body
    assert not verifies(head + b"\r\n\r\n" + tampered, dns)
    assert not verifies(received.data.replace(b"Subject: ", b"Subject: Re: ", 1), dns)


def test_a_reseller_without_a_key_goes_from_the_fallback_sender_and_passes(
    sqlite: Engine, keys: dict[str, Path]
) -> None:
    """From: "Nuage Conseil" <notices@relay.example>, Reply-To the reseller, signed by
    relay.example (Ed25519); the envelope sender is the fallback address too."""
    policy = build_policy({
        "dkim": [{"domain": "relay.example", "selector": "ed1",
                  "key_file": str(keys["ed25519"])}],
        "mail": {"fallback_from": "notices@relay.example"}})
    queue_notice(sqlite)
    mailer = MemoryMailer()
    assert deliver(sqlite, policy, mailer).as_dict() == {"sent": 1}
    (sent,) = mailer.delivered
    message = message_from_bytes(sent.data)
    assert message["From"] == "Nuage Conseil <notices@relay.example>"
    assert message["Reply-To"] == "Nuage Conseil <support@nuage.example>"
    assert sent.sender == "notices@relay.example"
    assert "a=ed25519-sha256" in message["DKIM-Signature"]
    assert verifies(sent.data, dns_of(loaded(keys)[1]))


def test_without_a_fallback_a_domain_without_a_key_goes_unsigned_and_status_names_it(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    config = tmp_path / "worker.toml"
    config.write_text(f'[[dkim]]\ndomain = "relay.example"\nselector = "ed1"\n'
                      f'key_file = "{keys["ed25519"]}"\n')
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(insert(RESELLERS).values(
            id="r1", name="Nuage", email="ops@nuage.example", sender_name="Nuage",
            locale="fr", timezone="Europe/Paris"))
    engine.dispose()
    shown = run_cli("status", "--format", "json", database_url=url, cwd=tmp_path,
                    WORKER_CONFIG=str(config))
    table = run_cli("status", database_url=url, cwd=tmp_path, WORKER_CONFIG=str(config))
    assert shown.json()["mail"] == {"unsigned_domains": ["nuage.example"], "suppressed": 0,
                                    "bounced": 0}
    assert "unsigned: nuage.example" in table.stdout


def test_a_retry_of_a_signed_message_sends_the_very_same_bytes(
    sqlite: Engine, keys: dict[str, Path]
) -> None:
    """452 for one recipient: five minutes later the other gets byte for byte what the
    first got, Date and signature included, and it still verifies."""
    queue_notice(sqlite, recipients=(A, B))
    policy = policy_with(keys)
    mailer = MemoryMailer(Script(rcpt={B: 452}))
    assert deliver(sqlite, policy, mailer).as_dict() == {"retrying": 1}
    mailer.script = Script()
    assert deliver(sqlite, policy, mailer, T + timedelta(minutes=5)).as_dict() == {"sent": 1}
    first, second = mailer.delivered
    assert (first.recipients, second.recipients) == ((A,), (B,))
    assert first.data == second.data
    assert verifies(second.data, dns_of(*loaded(keys)))


@pytest.mark.parametrize(("content", "problem"), [
    (None, "cannot read the key file"),
    (b"not a key", "neither a PEM private key"),
    ("rsa1024", "too short"),
])
def test_a_missing_unreadable_or_weak_key_is_refused_naming_its_domain(
    tmp_path: Path, content: bytes | str | None, problem: str
) -> None:
    path = tmp_path / "key.pem"
    if content == "rsa1024":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        path.write_bytes(weak.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    policy = build_policy({"dkim": [{"domain": "nuage.example", "selector": "s",
                                     "key_file": str(path)}]})
    with pytest.raises(ConfigError, match=problem) as raised:
        Signer.from_policy(policy)
    assert "nuage.example" in str(raised.value)


def test_run_stops_at_start_with_exit_2_when_a_key_cannot_be_read(tmp_path: Path) -> None:
    config = tmp_path / "worker.toml"
    config.write_text('[[dkim]]\ndomain = "nuage.example"\nselector = "s"\n'
                      f'key_file = "{tmp_path / "missing.key"}"\n')
    database_url = f"sqlite:///{tmp_path / 'w.db'}"
    assert 0 == run_cli("db", "upgrade", database_url=database_url, cwd=tmp_path).code
    done = run_cli("run", "--once", database_url=database_url, cwd=tmp_path,
                   WORKER_CONFIG=str(config))
    assert done.code == 2
    assert "configuration error: dkim nuage.example: cannot read the key file" in done.stderr


def test_dkim_keygen_writes_a_key_whose_printed_record_verifies_its_signatures(
    tmp_path: Path
) -> None:
    """The record printed is the one to publish: a message signed with the key written
    verifies against it (RSA 2048 by default, Ed25519 on request)."""
    for key_type, selector in (("rsa", "rw2027"), ("ed25519", "ed2027")):
        done = run_cli("dkim", "keygen", "nuage.example", selector, "--out", str(tmp_path),
                       "--type", key_type, database_url="sqlite:///unused.db", cwd=tmp_path)
        assert done.code == 0, done.stderr
        name, _, text = done.stdout.partition(" 3600 IN TXT ")
        record = "".join(re.findall(r'"([^"]*)"', text))
        assert name == f"{selector}._domainkey.nuage.example."
        assert record.startswith(f"v=DKIM1; k={key_type}; p=")
        key = read_key(tmp_path / f"nuage.example.{selector}.key", "nuage.example", selector)
        assert dns_record(key) == done.stdout.strip()
        signer = Signer({"nuage.example": key})
        sealed = signer.seal(b"From: ops@nuage.example\r\nTo: a@b.example\r\n"
                             b"Subject: hi\r\n\r\nbody\r\n")
        assert sealed is not None
        assert verifies(sealed, dns_of(key))
        assert (tmp_path / f"nuage.example.{selector}.key").stat().st_mode & 0o077 == 0


def test_openssl_makes_the_very_rsa_signature_dkimpy_would(keys: dict[str, Path]) -> None:
    """PKCS#1 v1.5 is deterministic: the OpenSSL step gives dkimpy's own bytes."""
    import hashlib

    from dkim.crypto import parse_pem_private_key

    from worker.mail import dkim as signing

    key = read_key(keys["rsa"], "nuage.example", "rw2027")
    private = parse_pem_private_key(key.private)
    digest = hashlib.sha256(b"from:ops@nuage.example\r\n")
    assert signing._rsa_sign(digest, private) == signing._DKIMPY_RSA_SIGN(digest, private)
