#!/usr/bin/python3
"""merkle-ref.py - an independent reference for kabar's Merkle tree and checkpoints.

Written straight from the recursive definitions of RFC 9162 section 2.1
(MTH, PATH, PROOF/SUBPROOF) with hashlib, and from the C2SP signed-note and
tlog-checkpoint specifications with python3-cryptography's Ed25519. It shares
no code with proto/merkle.c or proto/checkpoint.c; proto/merkle_test.c runs it
and compares every root and proof byte for byte, and the checkpoint golden file
proto/vectors/checkpoint.golden is written by it.

Usage:
  merkle-ref.py selftest          check against the Certificate Transparency
                                  known answers; exit 0 when they all hold
  merkle-ref.py dump N            for the leaves "leaf 0", "leaf 1", ...: every
                                  root of sizes 1..N, every inclusion proof and
                                  every consistency proof 1 <= m <= n <= N
  merkle-ref.py checkpoint        the golden signed checkpoint (stdout)
  merkle-ref.py vkey              the golden verifier key (stdout)

Output of dump, one record per line, hashes in lowercase hex:
  root SIZE HASH
  inclusion INDEX SIZE HASH...
  consistency OLD NEW HASH...
"""
import base64
import hashlib
import sys


def sha256(b):
    return hashlib.sha256(b).digest()


def leaf_hash(data):
    return sha256(b"\x00" + data)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def split(n):
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves):
    """MTH(D[n]) over the leaves' hashes (RFC 9162 2.1.1)."""
    n = len(leaves)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return leaves[0]
    k = split(n)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m, leaves):
    """PATH(m, D[n]) (RFC 9162 2.1.3.1)."""
    n = len(leaves)
    if n == 1:
        return []
    k = split(n)
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def subproof(m, leaves, b):
    """SUBPROOF(m, D[n], b) (RFC 9162 2.1.4.1)."""
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = split(n)
    if m <= k:
        return subproof(m, leaves[:k], b) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


def proof(m, leaves):
    """PROOF(m, D[n]); empty for m == n (and, by kabar's convention, m == 0)."""
    if m == 0:
        return []
    return subproof(m, leaves, True)


# The Certificate Transparency test tree (transparency-dev/merkle, RFC 6962/9162).
CT_DATA = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
           "606162636465666768696a6b6c6d6e6f"]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [  # (leaf index, tree size, proof)
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CT_CONSISTENCY = [  # (old size, new size, proof)
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]


def selftest():
    leaves = [leaf_hash(bytes.fromhex(d)) for d in CT_DATA]
    bad = 0
    for n, want in enumerate(CT_ROOTS):
        if mth(leaves[:n]).hex() != want:
            print(f"root of size {n} differs from the CT known answer", file=sys.stderr)
            bad += 1
    for i, n, want in CT_INCLUSION:
        if [h.hex() for h in path(i, leaves[:n])] != want:
            print(f"inclusion proof of leaf {i} in size {n} differs", file=sys.stderr)
            bad += 1
    for m, n, want in CT_CONSISTENCY:
        if [h.hex() for h in proof(m, leaves[:n])] != want:
            print(f"consistency proof {m} -> {n} differs", file=sys.stderr)
            bad += 1
    print("merkle-ref selftest: " + ("ok" if bad == 0 else f"{bad} failures"))
    return 0 if bad == 0 else 1


def dump(count):
    leaves = [leaf_hash(b"leaf %d" % i) for i in range(count)]
    out = []
    for n in range(1, count + 1):
        tree = leaves[:n]
        out.append(f"root {n} {mth(tree).hex()}")
        for i in range(n):
            out.append(" ".join([f"inclusion {i} {n}"] + [h.hex() for h in path(i, tree)]))
        for m in range(1, n + 1):
            out.append(" ".join([f"consistency {m} {n}"] + [h.hex() for h in proof(m, tree)]))
    sys.stdout.write("\n".join(out) + "\n")
    return 0


# The golden checkpoint: the CT test tree of 8 leaves, signed by a key made
# from a fixed seed (bytes 0..31). Never use this key for anything real.
GOLDEN_ORIGIN = "kabar.padang.go.id/log"
GOLDEN_SEED = bytes(range(32))


def golden_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    sk = Ed25519PrivateKey.from_private_bytes(GOLDEN_SEED)
    pk = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = sha256(GOLDEN_ORIGIN.encode() + b"\n" + b"\x01" + pk)[:4]
    return sk, pk, key_id


def checkpoint():
    sk, _, key_id = golden_key()
    text = f"{GOLDEN_ORIGIN}\n8\n{base64.b64encode(bytes.fromhex(CT_ROOTS[8])).decode()}\n"
    sig = sk.sign(text.encode())
    line = f"\u2014 {GOLDEN_ORIGIN} {base64.b64encode(key_id + sig).decode()}\n"
    sys.stdout.buffer.write((text + "\n" + line).encode())
    return 0


def vkey():
    _, pk, key_id = golden_key()
    key = base64.b64encode(b"\x01" + pk).decode()
    print(f"{GOLDEN_ORIGIN}+{key_id.hex()}+{key}")
    return 0


def main(argv):
    if len(argv) == 2 and argv[1] == "selftest":
        return selftest()
    if len(argv) == 3 and argv[1] == "dump" and argv[2].isdigit():
        return dump(int(argv[2]))
    if len(argv) == 2 and argv[1] == "checkpoint":
        return checkpoint()
    if len(argv) == 2 and argv[1] == "vkey":
        return vkey()
    print(__doc__.split("\n\n")[2], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
