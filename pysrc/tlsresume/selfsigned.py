"""Throwaway self-signed server certificates for ``tlsresume serve`` and ``demo``.

The certificate is meant for loopback tests only: EC P-256, valid for one day, with
subject alternative names ``127.0.0.1``, ``::1`` and ``localhost``. It lands in a
fresh private directory (mode 0700, files 0600) so the private key is never readable
by other users, and the caller removes the directory when done.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SelfSignedCert", "make_self_signed", "DEFAULT_NAMES"]

#: The names a loopback test server answers to.
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class SelfSignedCert:
    """Where a throwaway certificate and its key were written.

    Attributes:
        directory: the private directory holding both files (remove it with
            :meth:`cleanup`).
        cert: PEM certificate; it is its own issuer, so a client can trust it with
            ``cafile=cert``.
        key: PEM private key (PKCS#8, unencrypted), mode 0600.
    """

    directory: Path
    cert: Path
    key: Path

    def cleanup(self) -> None:
        """Remove the directory and both files; missing files are not an error."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file created with mode 0600 (never world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def make_self_signed(
    names: tuple[str, ...] = DEFAULT_NAMES,
    *,
    days: int = 1,
    directory: str | os.PathLike[str] | None = None,
) -> SelfSignedCert:
    """Make a self-signed EC P-256 server certificate and write it with its key.

    Args:
        names: DNS names and IP addresses (as text) to put in the subjectAltName.
            The first one is also the subject's common name.
        days: validity in days, starting one minute in the past (clock skew).
        directory: an existing directory to write into; by default a new private
            temporary directory (mode 0700) is made.

    Returns:
        The paths of the directory, certificate and key.

    Raises:
        ValueError: ``names`` is empty or ``days`` is not positive.
        OSError: the files could not be written (e.g. they already exist).
    """
    # Imported here: `cryptography` is a runtime dependency, but only this helper
    # needs it, and it takes a noticeable time to import.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not names:
        raise ValueError("make_self_signed needs at least one name for the certificate")
    if days <= 0:
        raise ValueError(f"make_self_signed: days must be positive, not {days}")

    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tlsresume throwaway"),
            x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
        ]
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        # CA:FALSE: this is a leaf that clients pin directly (cafile=cert); OpenSSL
        # accepts a self-signed leaf found in the trust store as its own anchor.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )

    if directory is None:
        # mkdtemp creates the directory with mode 0700.
        target = Path(tempfile.mkdtemp(prefix="tlsresume-cert-"))
    else:
        target = Path(directory)
    cert_path = target / "cert.pem"
    key_path = target / "key.pem"
    _write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return SelfSignedCert(directory=target, cert=cert_path, key=key_path)
