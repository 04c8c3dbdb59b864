"""Flight SQL commands by hand: the few protobuf pieces the Python suites send and read
(pyarrow speaks plain Flight only). Shared by tests/python and tests/fuzz
(tests/pytest_suite.sh puts this folder on PYTHONPATH)."""


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_bytes(field, b):
    return varint(field << 3 | 2) + varint(len(b)) + b


def pb_str(field, s):
    return pb_bytes(field, s.encode("utf-8", "surrogatepass"))


def pb_int(field, v):
    return varint(field << 3) + varint(v)


def any_cmd(name, value):
    return pb_str(1, "type.googleapis.com/arrow.flight.protocol.sql." + name) + pb_bytes(2, value)


def pb_field(buf, want):
    """First length-delimited field `want` of a protobuf message (enough to read a handle)."""
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        if key & 7 == 2:
            n, i = _read_varint(buf, i)
            if key >> 3 == want:
                return buf[i:i + n]
            i += n
        elif key & 7 == 0:
            _, i = _read_varint(buf, i)
        else:
            return None
    return None


def _read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        n |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not b & 0x80:
            return n, i
