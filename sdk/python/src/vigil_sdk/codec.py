"""Avro single-object encoding of vigil events, byte for byte what `crates/vigil-events` writes:
`c3 01`, the 8-byte little-endian CRC-64-AVRO fingerprint of the schema, then the Avro binary
body with every map written as one block sorted by key.

The schemas are the repository's `schemas/*.avsc`, shipped inside the package (`schemas/`); a
test checks the copies equal the originals.
"""

from __future__ import annotations

import io
import json
import struct
from importlib import resources
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import parse_schema, to_parsing_canonical_form

from .errors import InvalidEvent
from .events import OutcomeEvent, Prediction, PredictionEvent

MAGIC = b"\xc3\x01"
HEADER_LEN = 10
#: The Confluent Schema Registry framing: byte 0, then the schema id as 4 bytes big-endian.
CONFLUENT_MAGIC = 0
CONFLUENT_HEADER_LEN = 5


def confluent_header(schema_id: int) -> bytes:
    """The 5-byte Confluent header for ``schema_id`` (the id the registry gave the schema)."""
    if not 0 <= schema_id < 2**32:
        raise ValueError(f"schema id must fit in 4 bytes, got {schema_id}")
    return bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big")

PREDICTION = "vigil.v1.PredictionEvent"
OUTCOME = "vigil.v1.OutcomeEvent"

def load_schema_json(name: str) -> dict[str, Any]:
    """The schema `schemas/<name>.avsc` as shipped in the package."""
    text = resources.files(__package__).joinpath("schemas", f"{name}.avsc").read_text(encoding="utf-8")
    return json.loads(text)


def fingerprint(schema: Any) -> int:
    """CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form (fastavro's, as the
    Avro specification defines it), as an unsigned integer; the header carries it little-endian,
    and fastavro returns the little-endian bytes in hex."""
    digest = _fastavro_fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    return int.from_bytes(bytes.fromhex(digest), "little")


def _strip_logical_types(s: Any) -> Any:
    # The body encoding of a logical type is its primitive's; fastavro would turn
    # timestamp-millis into datetimes on read and inspect every value on write.
    if isinstance(s, dict):
        return {k: _strip_logical_types(v) for k, v in s.items() if k != "logicalType"}
    if isinstance(s, list):
        return [_strip_logical_types(v) for v in s]
    return s


class _Schema:
    __slots__ = ("json", "fingerprint", "header", "parsed")

    def __init__(self, name: str) -> None:
        self.json = load_schema_json(name)
        self.fingerprint = fingerprint(self.json)
        self.header = MAGIC + self.fingerprint.to_bytes(8, "little")
        self.parsed = parse_schema(_strip_logical_types(self.json))


_PREDICTION = _Schema("prediction")
_OUTCOME = _Schema("outcome")
SCHEMAS: dict[str, _Schema] = {PREDICTION: _PREDICTION, OUTCOME: _OUTCOME}
_BY_FINGERPRINT = {s.header[2:]: (name, s) for name, s in SCHEMAS.items()}


def _sorted(m: dict[str, Any]) -> dict[str, Any]:
    # One block sorted by key: Python orders str by code point, which is UTF-8 byte order, the
    # order of Rust's BTreeMap<String, _>.
    if len(m) < 2:
        return m
    return dict(sorted(m.items()))


# ---- the hot path: a hand-written body encoder ----------------------------------------------
# fastavro's schemaless_writer costs 20-30 us a call (it re-parses the schema and tries union
# branches one by one); this writes the same bytes in a few us. Tests check it against fastavro
# and against the Rust vectors.

_pack_double = struct.Struct("<d").pack
_SMALL = [bytes((i,)) for i in range(128)]
_NULL = b"\x00"
_SOME = b"\x02"  # union branch 1, zigzag
_END = b"\x00"
_CACHE_MAX = 65_536
_cached_strings: dict[str, bytes] = {}


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _long(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


def _string(s: str) -> bytes:
    b = s.encode("utf-8")
    return _varint(len(b) << 1) + b


def _name(s: str) -> bytes:
    # Map keys, model ids and versions repeat from call to call: encode them once.
    b = _cached_strings.get(s)
    if b is None:
        b = _string(s)
        if len(_cached_strings) < _CACHE_MAX:
            _cached_strings[s] = b
    return b


_LAYOUTS_MAX = 4_096
# Key tuple (in the dict's order) -> a struct that writes the whole map (block count, sorted
# entries, end marker) in one call, the keys in the order to read the values, and the argument
# list with the key bytes filled in. Feature dicts keep their keys from call to call.
_map_layouts: dict[tuple[str, ...], tuple[Any, tuple[str, ...], list[Any]]] = {}


def _map_layout(keys: tuple[str, ...]) -> tuple[Any, tuple[str, ...], list[Any]] | None:
    if len(_map_layouts) >= _LAYOUTS_MAX or not all(type(k) is str for k in keys):
        return None
    ordered = tuple(sorted(keys))
    count = _long(len(keys))
    fmt = [f"<{len(count)}s"]
    template: list[Any] = [count]
    for key in ordered:
        encoded = _string(key)
        fmt.append(f"{len(encoded)}sd")
        template += [encoded, None]
    fmt.append("x")  # the end-of-map marker, a zero byte
    layout = (struct.Struct("".join(fmt)).pack, ordered, template)
    _map_layouts[keys] = layout
    return layout


def _map_doubles(out: list[bytes], m: dict[str, float]) -> None:
    n = len(m)
    if not n:
        out.append(_END)
        return
    keys = tuple(m)
    layout = _map_layouts.get(keys) or _map_layout(keys)
    if layout is not None:
        pack, ordered, template = layout
        args = template.copy()
        args[2::2] = map(m.__getitem__, ordered)
        out.append(pack(*args))
        return
    out.append(_long(n))
    for k, v in sorted(m.items()) if n > 1 else m.items():
        out.append(_name(k))
        out.append(_pack_double(v))
    out.append(_END)


_string_maps: dict[tuple[tuple[str, str], ...], bytes] = {}


def _map_strings(out: list[bytes], m: dict[str, str]) -> None:
    # Segment tags and categorical features take few distinct values: cache whole encodings.
    n = len(m)
    if not n:
        out.append(_END)
        return
    items = tuple(m.items())
    encoded = _string_maps.get(items)
    if encoded is None:
        parts = [_long(n)]
        for k, v in sorted(items) if n > 1 else items:
            parts.append(_name(k))
            parts.append(_name(v))
        parts.append(_END)
        encoded = b"".join(parts)
        if len(_string_maps) < _CACHE_MAX and all(type(k) is str and type(v) is str for k, v in items):
            _string_maps[items] = encoded
    out.append(encoded)


def _opt_double(out: list[bytes], v: float | None) -> None:
    if v is None:
        out.append(_NULL)
    else:
        out.append(_SOME)
        out.append(_pack_double(v))


def _opt_string(out: list[bytes], v: str | None) -> None:
    if v is None:
        out.append(_NULL)
    else:
        out.append(_SOME)
        out.append(_name(v))


_ENCODE_ERRORS = (TypeError, AttributeError, struct.error, UnicodeError, OverflowError)


def encode_prediction(e: PredictionEvent, header: bytes | None = None) -> bytes:
    """The single-object bytes of a prediction (not validated: see `validate_prediction`); with
    ``header=confluent_header(id)``, the Confluent Schema Registry framing of the same body."""
    try:
        out = [
            _PREDICTION.header if header is None else header,
            _string(e.event_id),
            _string(e.prediction_id),
            _name(e.model_id),
            _name(e.model_version),
            _long(e.event_time_ms),
        ]
        _map_strings(out, e.segment)
        _map_doubles(out, e.numeric_features)
        _map_strings(out, e.categorical_features)
        p = e.prediction
        _opt_string(out, p.label)
        if p.probabilities is None:
            out.append(_NULL)
        else:
            out.append(_SOME)
            _map_doubles(out, p.probabilities)
        _opt_double(out, p.score)
        _opt_double(out, p.value)
        _opt_double(out, e.serving_latency_ms)
        return b"".join(out)
    except _ENCODE_ERRORS as error:
        raise _wrong_type(e, error) from None


def encode_outcome(e: OutcomeEvent, header: bytes | None = None) -> bytes:
    """The single-object bytes of an outcome (not validated: see `validate_outcome`); with
    ``header=confluent_header(id)``, the Confluent Schema Registry framing of the same body."""
    try:
        out = [
            _OUTCOME.header if header is None else header,
            _string(e.event_id),
            _string(e.prediction_id),
            _name(e.model_id),
            _long(e.event_time_ms),
        ]
        _opt_string(out, e.label)
        _opt_double(out, e.value)
        return b"".join(out)
    except _ENCODE_ERRORS as error:
        raise _wrong_type(e, error) from None


def _is_str(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        v.encode("utf-8")
    except UnicodeError:
        return False
    return True


def _is_num(v: Any) -> bool:
    try:
        _pack_double(v)
    except (TypeError, struct.error):
        return False
    return True


def _is_long(v: Any) -> bool:
    return isinstance(v, int) and -(2**63) <= v < 2**63


def _optional(check: Any) -> Any:
    return lambda v: v is None or check(v)


def _wrong_type(e: PredictionEvent | OutcomeEvent, error: Exception) -> InvalidEvent:
    """Names the field that could not be encoded (runs on the error path only)."""
    checks: list[tuple[str, Any, Any]] = [
        ("event_id", e.event_id, _is_str),
        ("prediction_id", e.prediction_id, _is_str),
        ("model_id", e.model_id, _is_str),
        ("event_time_ms", e.event_time_ms, _is_long),
    ]
    maps: list[tuple[str, Any, Any]] = []
    if isinstance(e, PredictionEvent):
        p = e.prediction
        checks += [
            ("model_version", e.model_version, _is_str),
            ("prediction.label", p.label, _optional(_is_str)),
            ("prediction.score", p.score, _optional(_is_num)),
            ("prediction.value", p.value, _optional(_is_num)),
            ("serving_latency_ms", e.serving_latency_ms, _optional(_is_num)),
        ]
        maps = [
            ("segment", e.segment, _is_str),
            ("numeric_features", e.numeric_features, _is_num),
            ("categorical_features", e.categorical_features, _is_str),
            ("prediction.probabilities", p.probabilities or {}, _is_num),
        ]
    else:
        checks += [("label", e.label, _optional(_is_str)), ("value", e.value, _optional(_is_num))]
    for name, value, ok in checks:
        if not ok(value):
            return InvalidEvent(name, "wrong_type", f"cannot be encoded ({type(value).__name__})")
    for name, m, ok in maps:
        if not isinstance(m, dict):
            return InvalidEvent(name, "wrong_type", f"is a {type(m).__name__}, not a dict")
        for k, v in m.items():
            if not _is_str(k) or not ok(v):
                return InvalidEvent(f"{name}[{k}]", "wrong_type", f"cannot be encoded ({type(v).__name__})")
    return InvalidEvent("?", "wrong_type", f"cannot be encoded: {error}")


# ---- the reference path: fastavro -------------------------------------------------------------


def _fastavro_bytes(schema: _Schema, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(schema.header)
    schemaless_writer(buf, schema.parsed, record)
    return buf.getvalue()


def encode_with_fastavro(e: PredictionEvent | OutcomeEvent) -> bytes:
    """The same bytes as `encode_prediction` / `encode_outcome`, written by fastavro's
    `schemaless_writer` with every map sorted by key: the reference the fast path is checked
    against (about ten times slower)."""
    if isinstance(e, OutcomeEvent):
        return _fastavro_bytes(_OUTCOME, {
            "event_id": e.event_id,
            "prediction_id": e.prediction_id,
            "model_id": e.model_id,
            "event_time_ms": e.event_time_ms,
            "label": e.label,
            "value": e.value,
        })
    p = e.prediction
    return _fastavro_bytes(_PREDICTION, {
        "event_id": e.event_id,
        "prediction_id": e.prediction_id,
        "model_id": e.model_id,
        "model_version": e.model_version,
        "event_time_ms": e.event_time_ms,
        "segment": _sorted(e.segment),
        "numeric_features": _sorted(e.numeric_features),
        "categorical_features": _sorted(e.categorical_features),
        "prediction": {
            "label": p.label,
            "probabilities": None if p.probabilities is None else _sorted(p.probabilities),
            "score": p.score,
            "value": p.value,
        },
        "serving_latency_ms": e.serving_latency_ms,
    })


def decode(data: bytes, registry: Any = None) -> PredictionEvent | OutcomeEvent:
    """Reads bytes written by any vigil SDK: single-object, or the Confluent framing (then the
    writer schema is fetched by id from ``registry``, a `SchemaRegistry`, and resolved against
    vigil's). Raises `ValueError` on bytes that are not a vigil prediction or outcome."""
    if len(data) >= CONFLUENT_HEADER_LEN and data[0] == CONFLUENT_MAGIC:
        return _decode_confluent(data, registry)
    if len(data) < HEADER_LEN or data[:2] != MAGIC:
        raise ValueError("not a vigil avro message: expected single-object marker c3 01 or confluent magic byte 00")
    found = _BY_FINGERPRINT.get(bytes(data[2:HEADER_LEN]))
    if found is None:
        raise ValueError(f"unknown schema fingerprint {int.from_bytes(data[2:HEADER_LEN], 'little'):016x}")
    name, schema = found
    buf = io.BytesIO(data)
    buf.seek(HEADER_LEN)
    record = schemaless_reader(buf, schema.parsed, None)
    if buf.tell() != len(data):
        raise ValueError(f"{len(data) - buf.tell()} bytes left after the record")
    assert isinstance(record, dict)
    if name == PREDICTION:
        record["prediction"] = Prediction(**record["prediction"])
        return PredictionEvent(**record)
    return OutcomeEvent(**record)


def _decode_confluent(data: bytes, registry: Any) -> PredictionEvent | OutcomeEvent:
    schema_id = int.from_bytes(data[1:CONFLUENT_HEADER_LEN], "big")
    if registry is None:
        raise ValueError(f"confluent-framed message (schema id {schema_id}): pass registry= to decode it")
    writer = registry.schema(schema_id)
    name = writer.get("name", "") if isinstance(writer, dict) else ""
    if isinstance(writer, dict) and "." not in name and writer.get("namespace"):
        name = f"{writer['namespace']}.{name}"
    schema = SCHEMAS.get(name)
    if schema is None:
        raise ValueError(f"schema id {schema_id} is {name or 'not a record'}, not a vigil prediction or outcome")
    buf = io.BytesIO(data)
    buf.seek(CONFLUENT_HEADER_LEN)
    record = schemaless_reader(buf, parse_schema(_strip_logical_types(writer)), schema.parsed)
    if buf.tell() != len(data):
        raise ValueError(f"{len(data) - buf.tell()} bytes left after the record")
    assert isinstance(record, dict)
    if name == PREDICTION:
        record["prediction"] = Prediction(**record["prediction"])
        return PredictionEvent(**record)
    return OutcomeEvent(**record)
