#!/usr/bin/env python3
"""gguf_meta.py FILE: a GGUF's metadata and tensor table as JSON, read independently of qforge.

{"kv": {KEY: {"type": "u32", "value": V}}, "tensors": [{"name", "type", "ne", "offset"}], "data_offset": N}
Arrays are {"type": "arr", "array_of": T, "value": [...]}. The reader follows the GGUF v3 layout
(https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) and checks nothing beyond what it reads.
"""
import json
import struct
import sys

TYPES = {0: ("u8", "<B"), 1: ("i8", "<b"), 2: ("u16", "<H"), 3: ("i16", "<h"), 4: ("u32", "<I"), 5: ("i32", "<i"),
         6: ("f32", "<f"), 7: ("bool", "<?"), 8: ("str", None), 9: ("arr", None), 10: ("u64", "<Q"), 11: ("i64", "<q"),
         12: ("f64", "<d")}


class Reader:
    def __init__(self, data):
        self.d, self.at = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.at)[0]
        self.at += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.d[self.at:self.at + n]
        self.at += n
        return s.decode("utf-8", "backslashreplace")

    def value(self, t):
        name, fmt = TYPES[t]
        if name == "str":
            return self.string()
        if name == "arr":
            et, n = self.take("<I"), self.take("<Q")
            return {"array_of": TYPES[et][0], "value": [self.value(et) for _ in range(n)]}
        return self.take(fmt)


def read(path):
    r = Reader(open(path, "rb").read())
    assert r.d[:4] == b"GGUF", "not a GGUF file"
    r.at = 4
    version, n_tensors, n_kv = r.take("<I"), r.take("<Q"), r.take("<Q")
    kv = {}
    for _ in range(n_kv):
        key, t = r.string(), r.take("<I")
        v = r.value(t)
        kv[key] = dict(type=TYPES[t][0], **(v if TYPES[t][0] == "arr" else {"value": v}))
    tensors = []
    for _ in range(n_tensors):
        name, nd = r.string(), r.take("<I")
        ne = [r.take("<Q") for _ in range(nd)]
        tensors.append({"name": name, "type": r.take("<I"), "ne": ne, "offset": r.take("<Q")})
    align = kv.get("general.alignment", {}).get("value", 32)
    data_offset = (r.at + align - 1) // align * align
    return {"version": version, "kv": kv, "tensors": tensors, "data_offset": data_offset}


if __name__ == "__main__":
    json.dump(read(sys.argv[1]), sys.stdout)
