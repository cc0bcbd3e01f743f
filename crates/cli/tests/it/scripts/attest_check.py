"""An independent check of Berth's registry attestations (Notary Project signatures made with the
registry key), with third-party code only: the oras Python SDK (auth, the referrers API through
its request helper, manifests, blobs) and `cryptography` (the ECDSA check, the certificate's
usage). Like notation_check.py, plus: the certificate is the registry's (LEAF_PEM, fetched with
`berth config attestation certificate`), self-signed with the codeSigning usage, and each
signature's signed record (the payload's targetArtifact annotations) is printed as a JSON line
`record {...}` for the test to compare with the TUF targets.

Usage: attest_check.py HOST:PORT CA_FILE USER PASSWORD REPO DIGEST LEAF_PEM
Lists the notary signatures of REPO@DIGEST, and for each checks: the manifest's shape (artifact
type, empty config, one jose layer, subject), the JWS headers, the ES256 signature over
BASE64URL(protected) '.' BASE64URL(payload) with the key of x5c[0] (which must be LEAF_PEM),
the payload's descriptor against the manifest the registry serves, and the thumbprints.
Prints "independent ok N" with the number of signatures checked.
"""
import base64
import hashlib
import json
import sys

import oras.client
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import ExtendedKeyUsageOID

host, ca, user, password, repo, digest, leaf_pem = sys.argv[1:8]
ART = "application/vnd.cncf.notary.signature"


def b64url(s):
    if "=" in s:
        sys.exit("base64url with padding")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


client = oras.client.OrasClient(hostname=host, tls_verify=ca, auth_backend="token")
client.login(username=user, password=password, hostname=host, tls_verify=ca)
reg = client  # OrasClient is the SDK's Registry provider
resp = reg.do_request(f"https://{host}/v2/{repo}/referrers/{digest}?artifactType={ART}", "GET")
if resp.status_code != 200:
    sys.exit(f"referrers answered {resp.status_code}: {resp.text}")
index = resp.json()
sigs = [d for d in index["manifests"] if d.get("artifactType") == ART]
if not sigs:
    sys.exit(f"no notary signature among the referrers: {index}")

target = reg.do_request(
    f"https://{host}/v2/{repo}/manifests/{digest}", "GET",
    headers={"Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json"},
)
target_type = target.headers["Content-Type"]
target_bytes = target.content
assert "sha256:" + hashlib.sha256(target_bytes).hexdigest() == digest
with open(leaf_pem, "rb") as f:
    leaf = x509.load_pem_x509_certificate(f.read())
# Self-signed by its own key, for code signing, not a CA.
leaf.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm))
assert leaf.issuer == leaf.subject, leaf.subject
assert ExtendedKeyUsageOID.CODE_SIGNING in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
assert isinstance(leaf.public_key().curve, ec.SECP256R1)

for d in sigs:
    m = reg.get_manifest(f"{host}/{repo}@{d['digest']}")
    assert m["artifactType"] == ART, m
    assert m["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2,
    }, m["config"]
    assert len(m["layers"]) == 1 and m["layers"][0]["mediaType"] == "application/jose+json", m
    assert m["subject"]["digest"] == digest and m["subject"]["size"] == len(target_bytes), m
    blob = reg.get_blob(f"{host}/{repo}", m["layers"][0]["digest"]).content
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == m["layers"][0]["digest"]
    env = json.loads(blob)
    prot = json.loads(b64url(env["protected"]))
    assert prot["alg"] == "ES256", prot
    assert prot["cty"] == "application/vnd.cncf.notary.payload.v1+json", prot
    assert prot["io.cncf.notary.signingScheme"] == "notary.x509", prot
    assert "io.cncf.notary.signingScheme" in prot["crit"], prot
    assert prot["io.cncf.notary.signingTime"].endswith("Z"), prot
    x5c = [base64.b64decode(c) for c in env["header"]["x5c"]]
    signer = x509.load_der_x509_certificate(x5c[0])
    assert signer == leaf, "x5c[0] is not the signing certificate"
    raw = b64url(env["signature"])
    assert len(raw) == 64, len(raw)
    der = utils.encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    signing_input = (env["protected"] + "." + env["payload"]).encode()
    signer.public_key().verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    payload = json.loads(b64url(env["payload"]))
    t = payload["targetArtifact"]
    assert t["digest"] == digest and t["size"] == len(target_bytes), t
    assert t["mediaType"] == target_type, (t, target_type)
    # The record on the manifest (for listings) is the signed one.
    for k, v in t["annotations"].items():
        assert m["annotations"][k] == v, (k, m["annotations"])
    thumbs = json.loads(m["annotations"]["io.cncf.notary.x509chain.thumbprint#S256"])
    assert thumbs == [hashlib.sha256(c).hexdigest() for c in x5c], thumbs
    print("record " + json.dumps({"signature": d["digest"], "listed": d.get("annotations", {}),
                                  "signed": t["annotations"], "signingTime": prot["io.cncf.notary.signingTime"]}))
print(f"independent ok {len(sigs)}")
