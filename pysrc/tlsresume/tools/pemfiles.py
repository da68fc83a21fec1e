"""The PEM files the commands take (``check --cafile``, ``serve --cert/--key``),
checked before use so that a wrong file is named with what it holds and what to
give instead, rather than surfacing as OpenSSL's ``PEM lib``.
"""

from __future__ import annotations

import re
import ssl

__all__ = ["pem_blocks", "check_cafile", "check_cert_and_key"]

_BEGIN_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")

#: Block labels that ``load_verify_locations`` takes as trust anchors.
_TRUST_LABELS = frozenset({"CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CRL"})


def pem_blocks(path: str, option: str) -> list[str]:
    """The labels of the PEM blocks in ``path`` (``["CERTIFICATE", "PRIVATE KEY"]``).

    Raises:
        ValueError: the file does not exist or cannot be read; the message names
            ``option`` and the path.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 22)
    except FileNotFoundError:
        raise ValueError(
            f"{option} {path}: the file does not exist; give the path of an existing PEM file"
        ) from None
    except IsADirectoryError:
        raise ValueError(f"{option} {path} is a directory; give a PEM file") from None
    except OSError as exc:
        raise ValueError(f"{option} {path}: cannot read it: {exc.strerror or exc}") from None
    return [m.decode("ascii") for m in _BEGIN_RE.findall(data)]


def _holds(labels: list[str]) -> str:
    if not labels:
        return "it holds no PEM block"
    kinds = sorted({label.lower() for label in labels})
    return "it holds " + ", ".join(kinds)


def _is_key(label: str) -> bool:
    return label.endswith("PRIVATE KEY")


def check_cafile(path: str) -> None:
    """``check --cafile``: the file exists and holds at least one certificate.

    Raises:
        ValueError: naming the file, what it holds, and what to give.
    """
    labels = pem_blocks(path, "--cafile")
    if not _TRUST_LABELS.intersection(labels):
        raise ValueError(
            f"--cafile {path} holds no CA certificate ({_holds(labels)}); give a PEM file "
            "of the CA certificates to trust (-----BEGIN CERTIFICATE----- blocks)"
        )


def check_cert_and_key(cert: str, key: str) -> None:
    """``serve --cert C --key K``: both exist, C holds a certificate, K a private key,
    and the key is the certificate's.

    Raises:
        ValueError: naming the file at fault, what it holds, and the fix (including
            when the two look swapped).
    """
    cert_labels = pem_blocks(cert, "--cert")
    key_labels = pem_blocks(key, "--key")
    cert_has_cert = "CERTIFICATE" in cert_labels
    key_has_key = any(_is_key(label) for label in key_labels)
    swapped = (
        not cert_has_cert
        and any(_is_key(label) for label in cert_labels)
        and "CERTIFICATE" in key_labels
    )
    if swapped:
        raise ValueError(
            f"--cert {cert} holds a private key and --key {key} a certificate: the two "
            f"look swapped; give --cert {key} --key {cert}"
        )
    if not cert_has_cert:
        raise ValueError(
            f"--cert {cert} is not a certificate ({_holds(cert_labels)}); give the PEM "
            "certificate chain (-----BEGIN CERTIFICATE----- blocks)"
        )
    if not key_has_key:
        raise ValueError(
            f"--key {key} holds no private key ({_holds(key_labels)}); give the PEM private "
            f"key of the certificate in {cert}"
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key, password=_no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(
                f"--key {key} is not the private key of the certificate in --cert {cert}; "
                "give the key the certificate was made for"
            ) from None
        raise ValueError(
            f"cannot load --cert {cert} with --key {key}: {exc.reason or exc}; check that "
            "both are PEM files, the key unencrypted"
        ) from None
    except _Encrypted:
        raise ValueError(
            f"--key {key} is encrypted and serve cannot ask for its passphrase; give an "
            f"unencrypted copy (openssl pkey -in {key} -out plain-key.pem)"
        ) from None
    except OSError as exc:  # vanished or unreadable since the read above
        raise ValueError(f"cannot load --cert {cert} with --key {key}: {exc}") from None


class _Encrypted(Exception):
    pass


def _no_password() -> str:
    # An encrypted key would make OpenSSL prompt on the terminal; a server started
    # from a script has nobody to answer.
    raise _Encrypted
