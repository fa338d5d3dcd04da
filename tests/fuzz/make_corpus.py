#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/ (checked in; rerun only on purpose).

Authentic seeds come from tests/vectors/format-v1.json: the fuzz targets use the same
fixed keys, so these seeds reach the "accepted" paths and mutations start next to them.

    python3 tests/fuzz/make_corpus.py
"""
import base64
import json
import shutil
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
VECTORS = json.loads((HERE.parent / "vectors" / "format-v1.json").read_text())


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def write(target, name, data):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def configs():
    base = {
        "active_generation": 1,
        "chunk_size": 4096,
        "cipher": "aes-256-gcm",
        "format": "wardfs",
        "holes": "allow",
        "keys": [{"created": "2024-01-01T00:00:00Z", "generation": 1, "wrapped": b64(bytes(range(72)))}],
        "keystore": {"kdf": {"algorithm": "argon2id13", "memlimit": 268435456, "opslimit": 3,
                             "salt": b64(bytes(range(16)))}, "type": "passphrase"},
        "version": 1,
        "volume_id": b64(bytes(range(0xc0, 0xd0))),
    }
    write("fuzz_config", "valid_passphrase.json", json.dumps(base, indent=2) + "\n")
    keyfile = dict(base, cipher="xchacha20-poly1305", chunk_size=65536, holes="never",
                   keystore={"type": "keyfile", "location": "/etc/wardfs/k\u00e9y"},
                   active_generation=2,
                   keys=base["keys"] + [{"generation": 2, "wrapped": b64(bytes(range(5, 77)))}])
    write("fuzz_config", "valid_keyfile.json", json.dumps(keyfile))
    write("fuzz_config", "missing_keys.json", json.dumps({k: v for k, v in base.items() if k != "keys"}))
    write("fuzz_config", "bad_chunk.json", json.dumps(dict(base, chunk_size=3000)))
    write("fuzz_config", "wrong_type.json", json.dumps(dict(base, version="1")))
    write("fuzz_config", "duplicate_generation.json",
          json.dumps(dict(base, keys=base["keys"] * 2)))
    write("fuzz_config", "not_object.json", "[1, 2, {\"format\": \"wardfs\"}]")
    write("fuzz_config", "truncated.json", json.dumps(base)[:150])
    write("fuzz_config", "deep_nesting.json", "[" * 5000 + "]" * 5000)
    write("fuzz_config", "escapes.json", json.dumps(dict(base, format="ward\\u0066s")).replace("\\\\", "\\"))


def headers():
    for i, h in enumerate(VECTORS["headers"]):
        if h["generation"] == 1:
            write("fuzz_header", f"vector_{i}.bin", bytes.fromhex(h["raw"]))
            write("fuzz_header", f"vector_{i}_with_data.bin", bytes.fromhex(h["raw"]) + bytes(40))
    write("fuzz_header", "short.bin", b"WDFS\x01\x00")
    write("fuzz_header", "zeros.bin", bytes(64))


def names():
    for i, e in enumerate(VECTORS["names"]["entries"]):
        if e["dir_id"] == "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf":
            write("fuzz_names", f"vector_{i}.txt", e["encoded"])
        if "long_name" in e:
            write("fuzz_names", f"vector_{i}_long.txt", e["long_name"])
            write("fuzz_names", f"vector_{i}_sidecar.txt", e["long_name"] + ".n")
    for i, plain in enumerate(["hello.txt", "..", "a/b", "Gr\u00fc\u00dfe", "x" * 170]):
        write("fuzz_names", f"plain_{i}.txt", plain)


def chunks():
    for i, c in enumerate(VECTORS["chunks"]):
        if c["generation"] != 1 or c["chunk_size"] != 4096:
            continue
        mode = (1 if c["cipher"] == "xchacha20-poly1305" else 0) | (2 if c["final"] else 0)
        data = bytes([mode]) + struct.pack("<Q", c["index"]) + bytes.fromhex(c["sealed"])
        write("fuzz_chunk", f"vector_{i}.bin", data)
    write("fuzz_chunk", "zeros.bin", bytes(80))


def control():
    """Request lines for the control socket (fuzz_control)."""
    lines = {
        "status": {"op": "status"}, "scan": {"op": "scan"}, "rotate": {"op": "rotate"},
        "rekey": {"op": "rekey", "rate": 1048576}, "rekey_slow": {"op": "rekey", "rate": 1e-9},
        "retire": {"op": "retire", "generation": 1}, "retire_force": {"op": "retire", "generation": 1, "force": True},
        "retire_bad": {"op": "retire", "generation": -1}, "unknown": {"op": "format-disk"},
        "wrong_types": {"op": ["status"], "rate": "fast", "generation": "1"},
    }
    for name, req in lines.items():
        write("fuzz_control", name + ".json", json.dumps(req) + "\n")
    write("fuzz_control", "two_lines.json", '{"op": "rotate"}\n{"op": "rekey"}\n')
    write("fuzz_control", "not_json.txt", "status please\n")
    write("fuzz_control", "no_newline.json", '{"op": "status"}')
    write("fuzz_control", "array.json", "[1, 2, 3]\n")


if __name__ == "__main__":
    shutil.rmtree(HERE / "corpus", ignore_errors=True)
    configs()
    headers()
    names()
    chunks()
    control()
    for d in sorted((HERE / "corpus").iterdir()):
        print(d.name, len(list(d.iterdir())), "files")
