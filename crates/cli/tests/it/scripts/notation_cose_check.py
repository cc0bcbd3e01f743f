"""An independent check of Berth's COSE Notary Project signatures, with third-party code only:
the oras Python SDK (auth, the referrers API through its request helper, manifests, blobs),
cbor2 (CBOR) and `cryptography` (ECDSA P-256 / RSA-PSS).

Usage: notation_cose_check.py HOST:PORT CA_FILE USER PASSWORD REPO DIGEST LEAF_PEM
Lists the notary signatures of REPO@DIGEST with an application/cose layer, and for each checks,
byte by byte where the spec fixes the bytes: COSE_Sign1_Tagged (tag 18); the protected header
map (alg -7 ES256 / -37 PS256 matching LEAF_PEM's key, crit, content type, signing scheme,
signing time as tag 1 over an integer); the unprotected x5chain (33) whose first certificate is
LEAF_PEM; the signature over the RFC 9052 Sig_structure ["Signature1", protected, h'', payload]
built here with cbor2; the payload's descriptor against the manifest the registry serves; and
the thumbprints. Prints "independent cose ok N" with the number of signatures checked.
"""
import hashlib
import json
import sys
import time

import cbor2
import oras.client
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

host, ca, user, password, repo, digest, leaf_pem = sys.argv[1:8]
ART = "application/vnd.cncf.notary.signature"
SCHEME = "io.cncf.notary.signingScheme"
TIME = "io.cncf.notary.signingTime"

client = oras.client.OrasClient(hostname=host, tls_verify=ca, auth_backend="token")
client.login(username=user, password=password, hostname=host, tls_verify=ca)
reg = client
resp = reg.do_request(f"https://{host}/v2/{repo}/referrers/{digest}?artifactType={ART}", "GET")
if resp.status_code != 200:
    sys.exit(f"referrers answered {resp.status_code}: {resp.text}")
sigs = [d for d in resp.json()["manifests"] if d.get("artifactType") == ART]

target = reg.do_request(
    f"https://{host}/v2/{repo}/manifests/{digest}", "GET",
    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
)
target_bytes = target.content
assert "sha256:" + hashlib.sha256(target_bytes).hexdigest() == digest
with open(leaf_pem, "rb") as f:
    leaf = x509.load_pem_x509_certificate(f.read())

checked = 0
for d in sigs:
    m = reg.get_manifest(f"{host}/{repo}@{d['digest']}")
    if m["layers"][0]["mediaType"] != "application/cose":
        continue
    assert len(m["layers"]) == 1, m
    assert m["artifactType"] == ART, m
    assert m["config"]["mediaType"] == "application/vnd.oci.empty.v1+json", m
    assert m["subject"]["digest"] == digest and m["subject"]["size"] == len(target_bytes), m
    blob = reg.get_blob(f"{host}/{repo}", m["layers"][0]["digest"]).content
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == m["layers"][0]["digest"]
    assert blob[:2] == b"\xd2\x84", blob[:2].hex()  # tag 18, array of 4
    msg = cbor2.loads(blob)
    assert isinstance(msg, cbor2.CBORTag) and msg.tag == 18, msg
    protected_bytes, unprotected, payload, signature = msg.value
    protected = cbor2.loads(protected_bytes)
    want_alg = -37 if isinstance(leaf.public_key(), rsa.RSAPublicKey) else -7
    assert protected[1] == want_alg, protected
    assert list(protected[2]) == [SCHEME], protected
    assert protected[3] == "application/vnd.cncf.notary.payload.v1+json", protected
    assert protected[SCHEME] == "notary.x509", protected
    # The signing time: tag 1 (0xc1) over a 32-bit unsigned integer (0x1a), right after its key.
    at = protected_bytes.index(cbor2.dumps(TIME)) + len(cbor2.dumps(TIME))
    assert protected_bytes[at:at + 2] == b"\xc1\x1a", protected_bytes[at:at + 6].hex()
    seconds = int.from_bytes(protected_bytes[at + 2:at + 6], "big")
    assert protected[TIME].timestamp() == seconds, protected[TIME]
    assert abs(time.time() - seconds) < 600, seconds
    assert set(protected) == {1, 2, 3, SCHEME, TIME}, protected
    assert unprotected["io.cncf.notary.signingAgent"].startswith("berth/"), unprotected
    chain = unprotected[33]
    assert isinstance(chain, (list, tuple)) and all(isinstance(c, bytes) for c in chain), chain
    signer = x509.load_der_x509_certificate(chain[0])
    assert signer == leaf, "x5chain[0] is not the signing certificate"
    tbs = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    if want_alg == -7:
        assert len(signature) == 64, len(signature)
        der = utils.encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        signer.public_key().verify(der, tbs, ec.ECDSA(hashes.SHA256()))
    else:
        signer.public_key().verify(
            signature, tbs,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    body = json.loads(payload)
    ta = body["targetArtifact"]
    assert ta["digest"] == digest and ta["size"] == len(target_bytes), ta
    assert ta["mediaType"] == "application/vnd.oci.image.manifest.v1+json", ta
    thumbs = json.loads(m["annotations"]["io.cncf.notary.x509chain.thumbprint#S256"])
    assert thumbs == [hashlib.sha256(c).hexdigest() for c in chain], thumbs
    checked += 1
if not checked:
    sys.exit("no COSE notary signature among the referrers")
print(f"independent cose ok {checked}")
