#!/usr/bin/env python3
"""Checks format-v1.json with an implementation that shares no code with wardfs.

Uses the Python 'cryptography' package (AES-GCM, ChaCha20-Poly1305, AES-SIV, HKDF,
HMAC). XChaCha20-Poly1305 is built here from its definition: HChaCha20 derives a
subkey from the first 16 nonce bytes, then IETF ChaCha20-Poly1305 runs with the nonce
0x00000000 | last 8 nonce bytes.

    python3 tests/vectors/check_vectors.py [tests/vectors/format-v1.json]
"""
import base64
import hashlib
import hmac
import json
import struct
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def hkdf(ikm, salt, info, length):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info.encode()).derive(ikm)


def rotl(v, c):
    return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))


def hchacha20(key, nonce16):
    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    s += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))

    def qr(a, b, c, d):
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 7)

    for _ in range(10):
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def aead_seal(cipher, key, nonce, plaintext, ad):
    if cipher == "aes-256-gcm":
        assert len(nonce) == 12
        return AESGCM(key).encrypt(nonce, plaintext, ad)
    assert cipher == "xchacha20-poly1305" and len(nonce) == 24
    sub = hchacha20(key, nonce[:16])
    return ChaCha20Poly1305(sub).encrypt(b"\0\0\0\0" + nonce[16:], plaintext, ad)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


CIPHER_IDS = {"aes-256-gcm": 1, "xchacha20-poly1305": 2}


def main():
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("format-v1.json"))
    v = json.loads(path.read_text())
    h = bytes.fromhex
    checks = 0

    def same(what, got, want):
        nonlocal checks
        checks += 1
        if got != want:
            raise SystemExit(f"MISMATCH {what}:\n  got  {got!r}\n  want {want!r}")

    # XChaCha20-Poly1305 construction, against draft-irtf-cfrg-xchacha-03 A.3.1.
    text = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
            b"the future, sunscreen would be it.")
    sealed = aead_seal("xchacha20-poly1305", bytes(range(0x80, 0xA0)), bytes(range(0x40, 0x58)),
                       text, h("50515253c0c1c2c3c4c5c6c7"))
    same("xchacha draft tag", sealed[-16:].hex(), "c0875924c1c7987947deafd8780acf49")

    fid = h(v["file_id"])
    vol = h(v["names"]["volume_id"])
    dek = {}
    for g in v["generations"]:
        d = h(g["dek"])
        dek[g["generation"]] = d
        same("content key", hkdf(d, fid, "wardfs v1 file content", 32).hex(), g["file_content_key"])
        same("header key", hkdf(d, fid, "wardfs v1 file header", 32).hex(), g["file_header_key"])
        same("name key", hkdf(d, vol, "wardfs v1 names", 64).hex(), g["name_key"])
        same("symlink key", hkdf(d, vol, "wardfs v1 symlinks", 32).hex(), g["symlink_key"])
        same("xattr key", hkdf(d, vol, "wardfs v1 xattrs", 32).hex(), g["xattr_key"])

    for hd in v["headers"]:
        g = hd["generation"]
        body = b"WDFS" + struct.pack("<HH", 1, hd["flags"]) + fid + struct.pack("<II", g, 0)
        tag = hmac.new(hkdf(dek[g], fid, "wardfs v1 file header", 32), body, hashlib.sha256).digest()
        same("header", (body + tag).hex(), hd["raw"])

    for c in v["chunks"]:
        g, idx, final = c["generation"], c["index"], c["final"]
        ad = fid + struct.pack("<QIB", idx, g, 1 if final else 0)
        same("chunk ad", ad.hex(), c["ad"])
        key = hkdf(dek[g], fid, "wardfs v1 file content", 32)
        nonce = h(c["nonce"])
        body = aead_seal(c["cipher"], key, nonce, h(c["plaintext"]), ad)
        same(f"chunk {c['cipher']} g{g} i{idx}", (struct.pack("<I", g) + nonce + body).hex(), c["sealed"])

    names = v["names"]
    siv = AESSIV(hkdf(dek[names["generation"]], vol, "wardfs v1 names", 64))
    for e in names["entries"]:
        name = e["name"].encode()
        same("name hex", name.hex(), e["name_hex"])
        pad = 16 - len(name) % 16
        padded = name + bytes([pad]) * pad
        same("padded", padded.hex(), e["padded"])
        out = siv.encrypt(padded, [h(e["dir_id"])])
        same("siv", out.hex(), e["siv"])
        enc = b64url(out)
        same("encoded", enc, e["encoded"])
        same("needs long name", len(enc) > 255, e["needs_long_name"])
        if len(enc) > 255:
            same("long name", "L." + b64url(hashlib.sha256(enc.encode()).digest()), e["long_name"])

    for w in v["dek_wraps"]:
        ad = (b"wardfs v1 dek wrap\0" + h(w["volume_id"]) +
              struct.pack("<IHBIB", w["generation"], w["version"], CIPHER_IDS[w["cipher"]],
                          w["chunk_size"], 1 if w["holes"] == "never" else 0) +
              struct.pack("<I", w["active_generation"]))
        same("wrap ad", ad.hex(), w["ad"])
        nonce = h(w["nonce"])
        wrapped = nonce + aead_seal("xchacha20-poly1305", h(w["kek"]), nonce, h(w["dek"]), ad)
        same("wrapped", wrapped.hex(), w["wrapped"])

    for b in v["blobs"]:
        g = b["generation"]
        key = hkdf(dek[g], vol, b["key_label"], 32)
        same("blob key", key.hex(), b["key"])
        aead_ad = struct.pack("<I", g) + h(b["ad"])
        same("blob aead ad", aead_ad.hex(), b["aead_ad"])
        nonce = h(b["nonce"])
        blob = struct.pack("<I", g) + nonce + aead_seal(b["cipher"], key, nonce, h(b["plaintext"]), aead_ad)
        same("blob", blob.hex(), b["blob"])
        same("blob base64url", b64url(blob), b["blob_base64url"])

    for b in v["long_symlink_targets"]:
        g = b["generation"]
        key = hkdf(dek[g], vol, b["key_label"], 32)
        same("long target key", key.hex(), b["key"])
        same("long target ad", b"wardfs v1 symlink".hex(), b["ad"])
        aead_ad = struct.pack("<I", g) + h(b["ad"])
        nonce = h(b["nonce"])
        blob = struct.pack("<I", g) + nonce + aead_seal(b["cipher"], key, nonce, h(b["plaintext"]), aead_ad)
        same("long target blob", blob.hex(), b["blob"])
        assert len(h(b["plaintext"])) <= 4095 < len(b64url(blob)) == b["short_form_length"]
        name = "T." + b64url(hashlib.sha256(blob).digest())
        same("long target sidecar name", name, b["sidecar_name"])
        same("long target backing target", name, b["backing_target"])

    for x in v["xattr_names"]:
        assert x["name"].startswith("user.")
        siv = AESSIV(hkdf(dek[x["generation"]], vol, "wardfs v1 names", 64))
        out = siv.encrypt(x["name"][5:].encode(), [b"wardfs v1 xattr name"])
        same("xattr ad", b"wardfs v1 xattr name".hex(), x["ad"])
        same("xattr siv", out.hex(), x["siv"])
        same("xattr backing name", "user." + b64url(out), x["backing_name"])

    print(f"{path}: all {checks} values match an independent implementation")


if __name__ == "__main__":
    main()
