#!/usr/bin/env python3
"""Build a deterministic synthetic container image as an OCI image layout.

Usage:
  tests/e2e/make-image.py DIR [--tag TAG] [--layers SIZE[,SIZE...]] [--seed SEED]

  DIR       the OCI layout directory (oci-layout, index.json, blobs/sha256/...). Created if
            missing; an existing layout is extended, and an index entry with the same tag is
            replaced, so one DIR can hold several tags.
  --tag     the org.opencontainers.image.ref.name of the index entry (default "latest").
            Use it as oci:DIR:TAG with skopeo. The tag does not change any digest.
  --layers  comma-separated payload sizes, binary suffixes K, M, G (default "1M"),
            e.g. "1M,200M,64K". Plain numbers are bytes.
  --seed    any string (default "1"). Same seed and sizes give byte-identical blobs, so the
            same digests, on every machine and Python >= 3.6; another seed gives other blobs.

Layer i (0-based) is a gzip'd tar with a directory "e2e/" and one regular file
"e2e/layer-<i>.bin" holding SIZE pseudo-random bytes: SHAKE-128 in counter mode, 1 MiB
block k being SHAKE128("df-e2e/<seed>/<i>/<k>"). Tar headers use fixed mtimes, owners
and modes. The gzip stream is written here, made of "stored" deflate blocks (no
compression; random data does not compress anyway), with a zero mtime in its header, so
its bytes do not depend on the zlib version. Everything is streamed in 1 MiB chunks: a
200 MiB layer never sits in memory.

Output: one JSON line on stdout:
  {"dir", "tag", "manifest_digest", "manifest_size", "config_digest", "config_size",
   "layers": [{"digest", "size", "diff_id", "payload_size"}, ...], "seconds"}
where size is the blob (compressed) size and diff_id the sha256 of the uncompressed tar.
"""
import argparse
import hashlib
import json
import os
import struct
import sys
import tarfile
import time
import zlib

CHUNK = 1 << 20
STORED_MAX = 65535
MTIME = 1704067200  # 2024-01-01T00:00:00Z
CREATED = "2024-01-01T00:00:00Z"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def parse_size(text):
    s = text.strip().upper()
    for suffix in ("IB", "B"):
        if s.endswith(suffix) and len(s) > len(suffix) and s[-len(suffix) - 1] in "KMG":
            s = s[: -len(suffix)]
    mult = 1
    if s and s[-1] in "KMG":
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[s[-1]]
        s = s[:-1]
    try:
        n = int(float(s) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError("bad size %r" % text)
    if n < 0:
        raise argparse.ArgumentTypeError("negative size %r" % text)
    return n


class Blob:
    """A blob being written: temp file in blobs/sha256, renamed to its digest on close."""

    def __init__(self, layout):
        self.dir = os.path.join(layout, "blobs", "sha256")
        os.makedirs(self.dir, exist_ok=True)
        self.tmp = os.path.join(self.dir, ".tmp-%d-%d" % (os.getpid(), time.monotonic_ns()))
        self.f = open(self.tmp, "wb")
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data):
        if data:
            self.f.write(data)
            self.sha.update(data)
            self.size += len(data)

    def close(self):
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        hexd = self.sha.hexdigest()
        os.replace(self.tmp, os.path.join(self.dir, hexd))
        return "sha256:" + hexd, self.size


class StoredGzip:
    """gzip (RFC 1952) of stored deflate blocks (RFC 1951 BTYPE=00), written by hand."""

    HEADER = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"  # no flags, mtime 0, OS unknown

    def __init__(self, out):
        self.out = out
        self.crc = 0
        self.isize = 0
        self.pending = b""
        out.write(self.HEADER)

    def _block(self, data, final):
        n = len(data)
        return struct.pack("<BHH", 1 if final else 0, n, n ^ 0xFFFF) + data

    def write(self, data):
        if not data:
            return
        self.crc = zlib.crc32(data, self.crc)
        self.isize += len(data)
        buf = self.pending + data
        full = len(buf) // STORED_MAX * STORED_MAX
        mv = memoryview(buf)
        parts = [self._block(bytes(mv[o:o + STORED_MAX]), False) for o in range(0, full, STORED_MAX)]
        if parts:
            self.out.write(b"".join(parts))
        self.pending = bytes(mv[full:])

    def close(self):
        self.out.write(self._block(self.pending, True))
        self.out.write(struct.pack("<II", self.crc & 0xFFFFFFFF, self.isize & 0xFFFFFFFF))
        self.pending = b""


def tar_header(name, size, is_dir):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    ti.size = 0 if is_dir else size
    ti.mode = 0o755 if is_dir else 0o644
    ti.mtime = MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti.tobuf(format=tarfile.GNU_FORMAT, encoding="utf-8", errors="strict")


def payload(seed, index, size):
    left, k = size, 0
    while left > 0:
        n = min(CHUNK, left)
        yield hashlib.shake_128(("df-e2e/%s/%d/%d" % (seed, index, k)).encode()).digest(n)
        left -= n
        k += 1


def make_layer(layout, index, size, seed):
    blob = Blob(layout)
    gz = StoredGzip(blob)
    diff = hashlib.sha256()

    def emit(data):
        diff.update(data)
        gz.write(data)

    emit(tar_header("e2e/", 0, True))
    emit(tar_header("e2e/layer-%d.bin" % index, size, False))
    for chunk in payload(seed, index, size):
        emit(chunk)
    emit(b"\0" * ((-size) % 512) + b"\0" * 1024)  # pad the file to 512, then end-of-archive
    gz.close()
    digest, bsize = blob.close()
    return {"digest": digest, "size": bsize, "diff_id": "sha256:" + diff.hexdigest(), "payload_size": size}


def write_json_blob(layout, obj):
    blob = Blob(layout)
    blob.write(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())
    return blob.close()


def atomic_write(path, text):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--tag", default="latest")
    ap.add_argument("--layers", default="1M")
    ap.add_argument("--seed", default="1")
    a = ap.parse_args()
    sizes = [parse_size(x) for x in a.layers.split(",") if x.strip()]
    if not sizes:
        ap.error("--layers: at least one layer")

    t0 = time.time()
    layout = a.dir
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    atomic_write(os.path.join(layout, "oci-layout"), json.dumps({"imageLayoutVersion": "1.0.0"}))

    layers = [make_layer(layout, i, size, a.seed) for i, size in enumerate(sizes)]
    config = {
        "created": CREATED,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Labels": {"df-e2e.seed": str(a.seed), "df-e2e.layers": a.layers}},
        "rootfs": {"type": "layers", "diff_ids": [l["diff_id"] for l in layers]},
        "history": [{"created": CREATED, "created_by": "make-image.py layer %d" % i} for i in range(len(layers))],
    }
    cfg_digest, cfg_size = write_json_blob(layout, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": cfg_digest, "size": cfg_size},
        "layers": [{"mediaType": MT_LAYER, "digest": l["digest"], "size": l["size"]} for l in layers],
    }
    man_digest, man_size = write_json_blob(layout, manifest)

    idx_path = os.path.join(layout, "index.json")
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}
    if os.path.exists(idx_path):
        with open(idx_path) as f:
            index = json.load(f)
    index["manifests"] = [m for m in index.get("manifests", [])
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != a.tag]
    index["manifests"].append({
        "mediaType": MT_MANIFEST, "digest": man_digest, "size": man_size,
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"org.opencontainers.image.ref.name": a.tag},
    })
    atomic_write(idx_path, json.dumps(index, sort_keys=True, separators=(",", ":")))

    print(json.dumps({
        "dir": os.path.abspath(layout), "tag": a.tag,
        "manifest_digest": man_digest, "manifest_size": man_size,
        "config_digest": cfg_digest, "config_size": cfg_size,
        "layers": layers,
        "seconds": round(time.time() - t0, 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
