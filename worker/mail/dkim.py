"""DKIM: the keys of `[[dkim]]`, read once at start, and the signature put on a message at
hand-over (dkimpy; RFC 6376, RFC 8463 for Ed25519).

Keys. A key file is a PEM private key (RSA of at least 2048 bits, or Ed25519 in PKCS#8,
as `openssl genpkey -algorithm ed25519` writes it) or, for Ed25519, the base64 of the raw
32-byte seed (dkimpy's `dknewkey` form). A file that is missing, unreadable, of another
kind or too short is a `ConfigError` naming the domain: the command stops at start with
exit status 2, before anything is sent unsigned by mistake.

Signing. `Signer.seal` signs the final bytes, after the Date header is stamped: relaxed/
relaxed canonicalization, `rsa-sha256` or `ed25519-sha256`, over `SIGNED` (a header
listed but absent, such as Reply-To on some messages, is signed as absent, so that no
one can add it later) and the whole body. The key is chosen by the domain of the From
header (the one DMARC aligns with), never by the envelope.

A retry sends the same bytes, so it carries the same signature: a sealed message (Date
and signature on it) is kept by the mail queue for the notice's next attempts and sent
as it is (`is_sealed`), instead of being stamped with a new Date and signed again. An
unsigned message keeps the old behaviour: a new Date at each hand-over.

RSA arithmetic. dkimpy computes the RSA signature in pure Python (about 7.5 ms of CPU
per message with a 2048-bit key here, 20 times OpenSSL's 0.4 ms): that alone held
delivery with RSA signing to a tenth of the plain rate. dkimpy still canonicalizes,
hashes and writes the header; only its `RSASSA_PKCS1_v1_5_sign(hash, key)` step is done
by OpenSSL (the `cryptography` package) for the keys read here, the same PKCS#1 v1.5
signature over the same digest, byte for byte (the tests verify every signature with
dkimpy's own verifier). Keys this module did not read keep dkimpy's own arithmetic.

`generate` makes a new key and `dns_record` the TXT record to publish for it.

Imports: worker.config, worker.errors.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import getaddresses
from pathlib import Path
from typing import Any, Literal

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

from worker.config.mailing import DkimKeyPolicy
from worker.config.policy import Policy
from worker.errors import ConfigError

MIN_RSA_BITS = 2048
KeyType = Literal["rsa", "ed25519"]
SIGNED = (b"from", b"reply-to", b"to", b"subject", b"date", b"message-id", b"mime-version",
          b"content-type", b"content-language", b"auto-submitted", b"x-notification-kind")
_RELAXED = (b"relaxed", b"relaxed")
_SEALED = b"dkim-signature:"
_FROM = re.compile(rb"^from:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", re.IGNORECASE | re.MULTILINE)
_OPENSSL_KEYS: dict[int, rsa.RSAPrivateKey] = {}  # by modulus: the keys read here
_PREHASHED = {"sha256": utils.Prehashed(hashes.SHA256()),
              "sha1": utils.Prehashed(hashes.SHA1())}  # noqa: S303 - dkimpy's rsa-sha1
_DKIMPY_RSA_SIGN: Callable[[Any, Mapping[str, int]], bytes] = dkim.RSASSA_PKCS1_v1_5_sign


def _rsa_sign(digest: Any, private_key: Mapping[str, int]) -> bytes:
    """dkimpy's RSASSA-PKCS1-v1_5 step, by OpenSSL for the keys read here (module
    docstring); `digest` is dkimpy's hash object of the signed headers."""
    key = _OPENSSL_KEYS.get(private_key["modulus"])
    algorithm = _PREHASHED.get(str(getattr(digest, "name", "")).lower())
    if key is None or algorithm is None:
        return _DKIMPY_RSA_SIGN(digest, private_key)
    return key.sign(digest.digest(), padding.PKCS1v15(), algorithm)


dkim.RSASSA_PKCS1_v1_5_sign = _rsa_sign


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A key ready for dkimpy: PEM bytes (RSA) or the base64 seed (Ed25519)."""

    domain: str
    selector: str
    kind: KeyType
    private: bytes
    public: bytes  # the base64 of the public key, as the DNS record's p= carries it

    @property
    def algorithm(self) -> bytes:
        return b"rsa-sha256" if self.kind == "rsa" else b"ed25519-sha256"


def read_key(path: Path, domain: str, selector: str) -> DkimKey:
    """The key in `path`, or ConfigError naming `domain` (module docstring)."""
    where = f"dkim {domain}"
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(where, f"cannot read the key file {path}: "
                          f"{error.strerror or error}") from None
    try:
        return _parse_key(data, domain, selector)
    except ValueError as error:
        raise ConfigError(where, f"{path}: {error}") from None


def _parse_key(data: bytes, domain: str, selector: str) -> DkimKey:
    text = data.strip()
    if not text.startswith(b"-----BEGIN"):
        try:
            seed = base64.b64decode(text, validate=True)
        except ValueError:
            raise ValueError("neither a PEM private key nor the base64 of an Ed25519 "
                             "seed") from None
        if len(seed) != 32:
            raise ValueError(f"an Ed25519 seed is 32 bytes, not {len(seed)}")
        return _ed25519(ed25519.Ed25519PrivateKey.from_private_bytes(seed), domain, selector)
    try:
        key = serialization.load_pem_private_key(text, password=None)
    except (ValueError, TypeError) as error:
        raise ValueError(f"not a readable, unencrypted PEM private key ({error})") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return _ed25519(key, domain, selector)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"a {type(key).__name__.removeprefix('_')} key: DKIM signs with "
                         "RSA or Ed25519")
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(f"an RSA key of {key.key_size} bits is too short (at least "
                         f"{MIN_RSA_BITS})")
    _OPENSSL_KEYS[key.private_numbers().public_numbers.n] = key
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return DkimKey(domain, selector, "rsa", pem, base64.b64encode(public))


def _ed25519(key: ed25519.Ed25519PrivateKey, domain: str, selector: str) -> DkimKey:
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    return DkimKey(domain, selector, "ed25519", base64.b64encode(seed),
                   base64.b64encode(public))


def is_sealed(data: bytes) -> bool:
    """Whether `data` already carries its Date and signature (sent as it is)."""
    return data[:len(_SEALED)].lower() == _SEALED


def from_domain(data: bytes) -> str | None:
    """The domain of the message's only From address (lowercase), or None."""
    head = data.split(b"\r\n\r\n", 1)[0]
    headers = _FROM.findall(head)
    if len(headers) != 1:
        return None
    found = getaddresses([headers[0].decode("utf-8", "replace")])
    if len(found) != 1 or "@" not in found[0][1]:
        return None
    return found[0][1].rpartition("@")[2].lower()


@dataclass(frozen=True)
class Signer:
    """The keys of every signing domain; signs by the From header's domain."""

    keys: Mapping[str, DkimKey]

    @classmethod
    def from_policy(cls, policy: Policy) -> Signer:
        """Every `[[dkim]]` key read now (ConfigError naming the domain otherwise)."""
        return cls({entry.domain: _load(entry) for entry in policy.dkim})

    @property
    def domains(self) -> frozenset[str]:
        return frozenset(self.keys)

    def seal(self, data: bytes) -> bytes | None:
        """`data` with a DKIM-Signature in front, or None when its From domain has no
        key (the message goes unsigned)."""
        if not self.keys:
            return None
        domain = from_domain(data)
        key = self.keys.get(domain) if domain else None
        if key is None:
            return None
        signature = dkim.sign(data, key.selector.encode(), key.domain.encode(), key.private,
                              canonicalize=_RELAXED, signature_algorithm=key.algorithm,
                              include_headers=list(SIGNED))
        return bytes(signature) + data


def _load(entry: DkimKeyPolicy) -> DkimKey:
    return read_key(entry.key_file, entry.domain, entry.selector)


# -- dkim keygen ------------------------------------------------------------------------


def generate(kind: KeyType = "rsa", bits: int = MIN_RSA_BITS) -> bytes:
    """A new private key, as the key file holds it (PEM for RSA, PKCS#8 for Ed25519)."""
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=max(bits, MIN_RSA_BITS))
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def record_text(key: DkimKey) -> str:
    """The TXT record's value: `v=DKIM1; k=rsa; p=…`."""
    return f"v=DKIM1; k={key.kind}; p={key.public.decode('ascii')}"


def dns_record(key: DkimKey) -> str:
    """The record in zone-file form, its text cut in strings of at most 255 characters
    (RFC 1035 character-strings): `rw2027._domainkey.nuage.example. 3600 IN TXT (…)`."""
    text = record_text(key)
    strings = [text[i:i + 250] for i in range(0, len(text), 250)]
    quoted = " ".join(f'"{s}"' for s in strings)
    return f"{key.selector}._domainkey.{key.domain}. 3600 IN TXT ( {quoted} )"
