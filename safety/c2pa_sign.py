"""C2PA manifests (optional extra ``sdguard[c2pa]``): sign last, read and summarise.

The manifest records a `c2pa.created` action with digital source type `trainedAlgorithmicMedia`.
Without a certificate of the user's own, sdguard makes a local identity: a private CA and an
ES256 leaf certificate signed by it (c2pa-rs refuses self-signed *leaf* certificates, and wants a
leaf with digitalSignature key usage and an allowed extended key usage such as emailProtection).
Such manifests validate (hashes and signature) but readers report the signer as untrusted
(`signingCredential.untrusted`): it proves integrity, not identity. No timestamp authority is
contacted (no network).
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

from .errors import GuardUnavailable

logger = logging.getLogger("sdguard.c2pa")

CREATED_ACTION = "c2pa.created"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
CERT_FILE, KEY_FILE = "c2pa-cert-chain.pem", "c2pa-key.pem"
_VALIDITY_DAYS = 3650
_INSTALL_HINT = "C2PA needs the optional extra: pip install 'sdguard[c2pa]' (c2pa-python, cryptography)"


def _c2pa() -> Any:
    try:
        import c2pa
    except ImportError as e:
        raise GuardUnavailable(f"{_INSTALL_HINT} ({e})") from None
    return c2pa


def manifest(title: str, software: str = "sdguard", version: str = "") -> dict[str, Any]:
    """The manifest definition: claim generator plus a `c2pa.created` action by a trained model."""
    agent = {"name": software, **({"version": version} if version else {})}
    return {
        "claim_generator_info": [{"name": "sdguard", "version": _sdguard_version()}],
        "title": title,
        "assertions": [{
            "label": "c2pa.actions",
            "data": {"actions": [{"action": CREATED_ACTION, "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                                  "softwareAgent": agent}]},
        }],
    }


def sign(data: bytes, fmt: str, cert_chain_pem: bytes, key_pem: bytes, *, title: str = "image",
         software: str = "sdguard") -> bytes:
    """Embed a signed C2PA manifest. Call this last: any later byte change breaks the hard binding.

    Args:
        data: the finished file (labels, watermark and metadata already in).
        fmt: "png", "jpeg" or "webp".
        cert_chain_pem: leaf certificate first, then its CA(s).
        key_pem: the leaf's private key (PKCS#8 PEM).

    Returns:
        The signed file's bytes.

    Raises:
        GuardUnavailable: c2pa-python is not installed, or signing failed (message says why).
    """
    c2pa = _c2pa()
    alg = _algorithm(key_pem)
    info = c2pa.C2paSignerInfo(alg=alg, sign_cert=cert_chain_pem, private_key=key_pem, ta_url=None)
    dest = io.BytesIO()
    # No claim thumbnail: c2pa-rs would embed a re-encoded copy of the image (10x the size for WebP).
    settings = c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}})
    try:
        with c2pa.Context(settings) as ctx, c2pa.Signer.from_info(info) as signer, \
                c2pa.Builder(manifest(title, software), ctx) as builder:
            builder.sign(signer, MIME[fmt], io.BytesIO(data), dest)
    except c2pa.C2paError as e:
        raise GuardUnavailable(f"C2PA signing failed: {e}") from None
    return dest.getvalue()


def summarize(data: bytes, fmt: str) -> dict[str, Any] | None:
    """A short summary of the active C2PA manifest, or None when the file has none.

    Returns:
        {"title", "claim_generator", "actions": [{"action", "digitalSourceType"}], "signer",
         "validation_state", "validation_errors": [codes]}; "error" instead when unreadable.
    """
    c2pa = _c2pa()
    try:
        with c2pa.Reader(MIME[fmt], io.BytesIO(data)) as reader:
            store = json.loads(reader.json())
            state = reader.get_validation_state()
    except c2pa.C2paError as e:
        text = str(e)
        if "ManifestNotFound" in text or "JumbfNotFound" in text or "not found" in text.lower():
            return None
        return {"error": text}
    active = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    actions = []
    for assertion in active.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            actions += [{"action": a.get("action"), "digitalSourceType": a.get("digitalSourceType")}
                        for a in assertion.get("data", {}).get("actions", [])]
    generator = active.get("claim_generator_info") or [{}]
    statuses = store.get("validation_results", {}).get("activeManifest", {}).get("failure", [])
    return {
        "title": active.get("title"),
        "claim_generator": generator[0].get("name"),
        "actions": actions,
        "signer": (active.get("signature_info") or {}).get("issuer"),
        "validation_state": str(state) if state is not None else None,
        "validation_errors": [s.get("code") for s in statuses],
    }


def load_identity(folder: Path) -> tuple[bytes, bytes]:
    """The certificate chain and key in a folder the user named.

    Returns:
        (cert_chain_pem, key_pem).

    Raises:
        FileNotFoundError: either file is missing; a named identity is never replaced by a new one,
            since a manifest signed by the wrong signer is worse than none.
    """
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    missing = [p.name for p in (cert_path, key_path) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: no C2PA identity ({' and '.join(missing)} missing); "
                                f"give a folder holding {CERT_FILE} and {KEY_FILE}")
    return cert_path.read_bytes(), key_path.read_bytes()


def load_or_create_identity(folder: Path) -> tuple[bytes, bytes]:
    """The identity in sdguard's own folder, creating a local CA + leaf there when it has none.

    Returns:
        (cert_chain_pem, key_pem).

    Raises:
        FileNotFoundError: only one of the two files is there (it is left alone).
        GuardUnavailable: `cryptography` is not installed.
    """
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    if cert_path.exists() or key_path.exists():
        return load_identity(folder)
    chain, key = create_identity()
    folder.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(chain)
    # The key is a secret: owner-only permissions where the OS supports them.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    logger.info("created a local (self-signed CA) C2PA identity in %s", folder)
    return chain, key


def create_identity(name: str = "sdguard local signer") -> tuple[bytes, bytes]:
    """A new private CA and an ES256 leaf certificate for C2PA claim signing.

    Returns:
        (leaf + CA certificate chain PEM, leaf private key PEM).
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as e:
        raise GuardUnavailable(f"{_INSTALL_HINT} ({e})") from None

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    until = now + datetime.timedelta(days=_VALIDITY_DAYS)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA (self-signed)"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sdguard local")])
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                           x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sdguard local")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(leaf_name).issuer_name(ca_name)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + ca.public_bytes(pem)
    key = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return chain, key


def _algorithm(key_pem: bytes) -> Any:
    """The C2PA signing algorithm matching the key type (ES256/384/512, Ed25519, PS256)."""
    c2pa = _c2pa()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    key = serialization.load_pem_private_key(key_pem, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return c2pa.C2paSigningAlg.ED25519
    if isinstance(key, rsa.RSAPrivateKey):
        return c2pa.C2paSigningAlg.PS256
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {256: c2pa.C2paSigningAlg.ES256, 384: c2pa.C2paSigningAlg.ES384}.get(
            key.curve.key_size, c2pa.C2paSigningAlg.ES512)
    raise GuardUnavailable("C2PA key must be EC (P-256/384/521), Ed25519 or RSA")


def _sdguard_version() -> str:
    try:
        from importlib.metadata import version
        return version("sdguard")
    except Exception:  # not installed as a distribution (e.g. copied into a host's extension folder)
        return "0"
