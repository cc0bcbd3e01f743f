"""Writes a test PKI for Notary Project signatures with the `cryptography` package.

Usage: notation_pki.py OUTDIR
Files: ca.pem (root CA), other-ca.pem (an unrelated root CA), chain.pem (leaf then CA),
leaf.pem, leaf.key (PKCS#8), leaf-sec1.key (SEC1 "EC PRIVATE KEY"), all ECDSA P-256; rsa.key and
rsa-chain.pem (an RSA 2048 signer under the same CA). Signers have the codeSigning EKU.
"""
import datetime
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
now = datetime.datetime.now(datetime.timezone.utc)


def name(cn):
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


ca_key, ca_cert = ca("Berth Test Root")
_, other = ca("Berth Other Root")
def signer(key, cn):
    return (
    x509.CertificateBuilder()
    .subject_name(name(cn))
    .issuer_name(ca_cert.subject)
    .public_key(key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(hours=1))
    .not_valid_after(now + datetime.timedelta(days=30))
    .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
    .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    .sign(ca_key, hashes.SHA256())
    )


leaf_key = ec.generate_private_key(ec.SECP256R1())
leaf = signer(leaf_key, "Berth Signer")
rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
rsa_leaf = signer(rsa_key, "Berth RSA Signer")
files = {
    "rsa-chain.pem": pem(rsa_leaf) + pem(ca_cert),
    "rsa.key": rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ),
    "ca.pem": pem(ca_cert),
    "other-ca.pem": pem(other),
    "leaf.pem": pem(leaf),
    "chain.pem": pem(leaf) + pem(ca_cert),
    "leaf.key": leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ),
    "leaf-sec1.key": leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ),
}
for f, data in files.items():
    with open(os.path.join(out, f), "wb") as fh:
        fh.write(data)
print("pki ok")
