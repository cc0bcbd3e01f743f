"""Push a 12 MiB artifact with the oras Python SDK (a third-party client) and pull it back.

Usage: oras_roundtrip.py HOST:PORT CA_FILE USER PASSWORD basic|token
The SDK sends each request without credentials first and reads the answer only after
writing the whole body, so it needs the registry's early answers to arrive intact.
"""
import hashlib
import os
import sys
import tempfile

import oras.client

host, ca, user, password, mode = sys.argv[1:6]
work = tempfile.mkdtemp()
data = os.urandom(12 << 20)
with open(os.path.join(work, "artifact.bin"), "wb") as f:
    f.write(data)
client = oras.client.OrasClient(hostname=host, tls_verify=ca, auth_backend=mode)
client.login(username=user, password=password, hostname=host, tls_verify=ca)
target = f"{host}/oras/{mode}:v1"
os.chdir(work)
resp = client.push(files=["artifact.bin"], target=target)
if resp.status_code != 201:
    sys.exit(f"push answered {resp.status_code}: {resp.text}")
files = client.pull(target=target, outdir=os.path.join(work, "out"))
with open(files[0], "rb") as f:
    got = f.read()
if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
    sys.exit("the pulled artifact differs from the pushed one")
print(f"roundtrip ok: {mode} {len(got)} bytes")
