#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/ (checked in; rerun only on purpose).

Authentic seeds come from tests/vectors/format-v1.json: the fuzz targets use the same
fixed keys, so these seeds reach the "accepted" paths and mutations start next to them.

    python3 tests/fuzz/make_corpus.py
"""
import base64
import hashlib
import hmac
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
        "metrics": {"op": "metrics"}, "health": {"op": "health"},
    }
    for name, req in lines.items():
        write("fuzz_control", name + ".json", json.dumps(req) + "\n")
    write("fuzz_control", "two_lines.json", '{"op": "rotate"}\n{"op": "rekey"}\n')
    write("fuzz_control", "not_json.txt", "status please\n")
    write("fuzz_control", "no_newline.json", '{"op": "status"}')
    write("fuzz_control", "array.json", "[1, 2, 3]\n")


AUDIT_KEY = bytes(range(0x40, 0x60))  # fuzz_audit's audit_key()


def audit_line(fields, prev=bytes(32), mac_hex=None):
    """A record as seal_record writes it: sorted keys, no spaces, then the MAC member."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    mac = hmac.new(AUDIT_KEY, prev + text.encode(), hashlib.sha256).hexdigest()
    return text[:-1] + ',"mac":"' + (mac_hex or mac) + '"}'


def audit():
    """fuzz_audit: mode byte, then a record line (0), an event (1) or a log damage (2, 3)."""
    who = {"gid": 1000, "pid": 4242, "program": "trainer", "uid": 1000}
    base = {"event": "open", "principal": who, "result": "ok", "seq": 2,
            "time": "2026-01-01T00:00:02.000000Z", "volume": "fuzz-volume"}
    lines = {
        "open": audit_line(dict(base, path="/data/caf\u00e9.bin", detail={"mode": "read", "created": False})),
        "unwrap": audit_line(dict(base, event="unwrap", seq=1, generation=1, keystore="keyfile:/k")),
        "continued": audit_line(dict(base, event="log_continued", seq=5, detail={
            "previous_segment": "audit.jsonl.000001", "prev_mac": "ab" * 32})),
        "upper_mac": audit_line(base, mac_hex="AB" * 32),
        "spaced": '{"seq": 1, "event": "x" ,"mac":"' + "00" * 32 + '"}',
        "duplicate_keys": '{"seq":1,"mac":"zz","seq":2,"mac":"' + "11" * 32 + '"}',
        "not_json": '{"seq":1,,"mac":"' + "22" * 32 + '"}',
        "negative_seq": '{"seq":-1,"mac":"' + "33" * 32 + '"}',
        "short_mac": '{"seq":1,"mac":"abcd"}',
    }
    for name, line in lines.items():
        write("fuzz_audit", f"parse_{name}.bin", b"\x00" + line.encode())

    def event(seq, flags, strings):
        head = struct.pack("<QBIIIIB", seq, flags, 1000, 1000, 4242, 2, 7)
        return b"\x01" + head + b"\x00".join(strings)

    write("fuzz_audit", "seal_open.bin", event(3, 0, [b"open", b"/data/a", b"", b"ok", b"python3",
                                                       b"vol", b"", b'{"mode":"read"}']))
    write("fuzz_audit", "seal_key_event.bin", event(2**64 - 1, 1, [b"rotate", b"", b"kms:arn",
                                                               b"denied", b"wardfs", b"vol",
                                                               b"2026-01-01T00:00:00.000000Z"]))
    write("fuzz_audit", "seal_bad_utf8.bin", event(1, 0, [b"op\xff", b"/\xc3(\n\"", b"", b"",
                                                          b"\xfe", b"v\x80", b"t", b"\xffnot json"]))

    # (records, split, target, op, offset, payload): target 0 segment, 1 live, 2 checkpoint;
    # op 0 overwrite, 1 insert, 2 replace, 3 truncate, 4 append, 5 erase, 6 remove.
    damages = {
        "intact": (4, 0, 1, 5, 0, b""), "intact_split": (6, 3, 1, 5, 0, b""),
        "flip": (4, 0, 1, 0, 40, b"X"), "cut_tail": (5, 0, 1, 3, 400, b""),
        "cut_newline": (3, 0, 1, 5, 65535, b"\n"), "no_checkpoint": (3, 0, 2, 6, 0, b""),
        "no_first_segment": (6, 3, 0, 6, 0, b""), "blank_line": (4, 0, 1, 4, 0, b"\n"),
        "torn_fragment": (4, 0, 1, 4, 0, b'{"seq":9'), "inserted": (4, 2, 1, 1, 0, b'{}\n'),
        "forged_checkpoint": (2, 0, 2, 2, 0, b'{"seq":1,"mac":"' + b"00" * 32 +
                              b'","time":"t","checkpoint_mac":"' + b"00" * 32 + b'"}'),
        "extra_segment": (2, 0, 0, 2, 0, audit_line(base).encode() + b"\n"),
        "empty_first_segment": (6, 2, 0, 2, 0, b""),
        "forged_continued": (1, 0, 1, 2, 0, lines["continued"].encode() + b"\n"),
    }
    for name, (records, split, target, op, offset, payload) in damages.items():
        head = struct.pack("<BBBH", records - 1, split, target + 3 * op, offset)
        write("fuzz_audit", f"verify_{name}.bin", b"\x02" + head + payload)
        write("fuzz_audit", f"resume_{name}.bin", b"\x03" + head + payload)
    rotating = struct.pack("<BBBH", 3, 0, 1 + 3 * 5 + 21, 0)  # intact, small rotation
    write("fuzz_audit", "resume_rotating.bin", b"\x03" + rotating)


if __name__ == "__main__":
    shutil.rmtree(HERE / "corpus", ignore_errors=True)
    configs()
    headers()
    names()
    chunks()
    control()
    audit()
    for d in sorted((HERE / "corpus").iterdir()):
        print(d.name, len(list(d.iterdir())), "files")
