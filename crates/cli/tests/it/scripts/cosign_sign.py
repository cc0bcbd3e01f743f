"""Cosign signatures made independently of Berth, with the `cryptography` package, per
sigstore/cosign's specs/SIGNATURE_SPEC.md (simple signing payload, ECDSA P-256 over SHA-256,
base64 ASN.1 DER signature).

Usage: cosign_sign.py OUTDIR DOCKER_REFERENCE DIGEST OTHER_DIGEST
Files: pub.pem (the signer's public key, PEM SubjectPublicKeyInfo as cosign writes it),
other-pub.pem (an unrelated key), good.json + good.sig (a signature of DIGEST),
wrong-digest.json + wrong-digest.sig (a valid signature of OTHER_DIGEST).
"""
import base64
import json
import os
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

out, ref, digest, other = sys.argv[1:5]
os.makedirs(out, exist_ok=True)


def public_pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


key = ec.generate_private_key(ec.SECP256R1())
with open(os.path.join(out, "pub.pem"), "wb") as f:
    f.write(public_pem(key))
with open(os.path.join(out, "other-pub.pem"), "wb") as f:
    f.write(public_pem(ec.generate_private_key(ec.SECP256R1())))

for name, d in [("good", digest), ("wrong-digest", other)]:
    payload = json.dumps({
        "critical": {
            "identity": {"docker-reference": ref},
            "image": {"docker-manifest-digest": d},
            "type": "cosign container image signature",
        },
        "optional": None,
    }).encode()
    sig = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    with open(os.path.join(out, name + ".json"), "wb") as f:
        f.write(payload)
    with open(os.path.join(out, name + ".sig"), "w") as f:
        f.write(base64.b64encode(sig).decode())
