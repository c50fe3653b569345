#!/usr/bin/env python3
"""Print one SHA-256 per safetensors file over its content in a canonical order: the header
(metadata and tensor table) as sorted-key JSON, then each tensor's bytes by name. Two exports
with the same tensors and metadata get the same digest whatever order the metadata was written
in. Usage: tools/export_digest.py FILE..."""
import hashlib
import json
import struct
import sys


def digest(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    h = hashlib.sha256()
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    table = {k: {"dtype": v["dtype"], "shape": v["shape"]} for k, v in tensors.items()}
    h.update(json.dumps({"meta": header.get("__metadata__", {}), "tensors": table}, sort_keys=True).encode())
    for name in sorted(tensors):
        a, b = tensors[name]["data_offsets"]
        h.update(name.encode())
        h.update(data[a:b])
    return h.hexdigest()


for p in sys.argv[1:]:
    print(f"{digest(p)}  {p.rsplit('/', 1)[-1]}")
