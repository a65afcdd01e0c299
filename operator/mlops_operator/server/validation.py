"""Open Inference Protocol V2 tensors: the signature, and requests checked against it.

Tensors come as JSON ``data`` or, with the binary tensor extension, as raw bytes after the JSON header
(``parameters.binary_data_size`` per input, in the order of the inputs): row-major, little-endian, one byte per
BOOL, and each BYTES element a 4-byte little-endian length followed by its bytes (UTF-8 text here).

Every problem is a ``RequestError`` whose message names the input and the reason; the server answers it with 400.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

DTYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}  # fmt: skip
UNSUPPORTED = {"BF16": "BF16 has no numpy type; send FP32"}
# numpy kinds a JSON array may parse into, per V2 datatype: booleans are not numbers, floats are not integers.
ACCEPTED_KINDS = {"BOOL": "b", "BYTES": "U"}
INTEGER_KINDS, FLOAT_KINDS = "iu", "iuf"


class RequestError(ValueError):
    """A request that does not fit the signature (HTTP 400)."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]
    features: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = ()
    by_name: Mapping[str, TensorSpec] = field(default_factory=dict)

    @staticmethod
    def parse(raw: Mapping[str, Any]) -> Signature:
        """A signature from ModelVersion spec.signature (camelCase or snake_case keys)."""

        def tensors(items: Sequence[Mapping[str, Any]]) -> tuple[TensorSpec, ...]:
            out = []
            for t in items:
                if t["datatype"] not in DTYPES:
                    raise ValueError(f"signature tensor {t['name']}: datatype {t['datatype']} is not supported")
                out.append(TensorSpec(t["name"], t["datatype"], tuple(int(d) for d in t["shape"]),
                                      tuple(t.get("features") or ())))  # fmt: skip
            return tuple(out)

        inputs = tensors(raw.get("inputs") or [])
        if not inputs:
            raise ValueError("the signature has no inputs")
        return Signature(inputs, tensors(raw.get("outputs") or []), {t.name: t for t in inputs})


def _shape_matches(shape: Sequence[int], expected: Sequence[int]) -> bool:
    return len(shape) == len(expected) and all(e == -1 or s == e for s, e in zip(shape, expected, strict=True))


def _fmt_shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def parse_inputs(body: Any, signature: Signature, binary: bytes = b"") -> dict[str, npt.NDArray[Any]]:
    """The request's inputs as arrays of the signature's types and shapes, binary ones read from ``binary`` (the
    bytes after the JSON header); raises RequestError."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    raw_inputs = body.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise RequestError("'inputs' must be a non-empty list of tensors")
    arrays: dict[str, npt.NDArray[Any]] = {}
    offset = 0
    for position, item in enumerate(raw_inputs):
        if not isinstance(item, dict):
            raise RequestError(f"inputs[{position}] must be an object with name, shape, datatype and data")
        name = item.get("name")
        if not isinstance(name, str):
            raise RequestError(f"inputs[{position}].name must be a string")
        spec = signature.by_name.get(name)
        if spec is None:
            known = ", ".join(repr(t.name) for t in signature.inputs)
            raise RequestError(f"input {name!r} is not in the signature (inputs: {known})")
        if name in arrays:
            raise RequestError(f"input {name!r} is given twice")
        size = _binary_size(item, spec)
        if size is None:
            arrays[name] = _tensor(item, spec)
        else:
            if offset + size > len(binary):
                raise RequestError(f"input {name!r}: binary_data_size {size} runs past the end of the binary data "
                                   f"({len(binary) - offset} bytes left)")  # fmt: skip
            arrays[name] = _binary_tensor(item, spec, binary[offset : offset + size])
            offset += size
    if offset != len(binary):
        raise RequestError(f"{len(binary) - offset} bytes of binary data follow the last binary input")
    missing = [t.name for t in signature.inputs if t.name not in arrays]
    if missing:
        raise RequestError(f"missing input(s): {', '.join(repr(m) for m in missing)}")
    return arrays


def _binary_size(item: dict[str, Any], spec: TensorSpec) -> int | None:
    """The input's ``parameters.binary_data_size`` (None: its data is JSON)."""
    parameters = item.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise RequestError(f"input {spec.name!r}: parameters must be an object")
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RequestError(f"input {spec.name!r}: binary_data_size must be a non-negative integer, got {size!r}")
    if "data" in item:
        raise RequestError(f"input {spec.name!r}: give data or parameters.binary_data_size, not both")
    return size


def _header(item: dict[str, Any], spec: TensorSpec) -> tuple[str, list[int]]:
    """The input's datatype and shape, checked against the signature."""
    where = f"input {spec.name!r}"
    datatype = item.get("datatype")
    if datatype in UNSUPPORTED:
        raise RequestError(f"{where}: {UNSUPPORTED[datatype]}")
    if datatype != spec.datatype:
        raise RequestError(f"{where}: datatype {datatype!r} does not match the signature's {spec.datatype}")
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):  # fmt: skip
        raise RequestError(f"{where}: shape must be a list of non-negative integers")
    if not _shape_matches(shape, spec.shape):
        raise RequestError(f"{where}: shape {_fmt_shape(shape)} does not match the signature's "
                           f"{_fmt_shape(spec.shape)} (-1 is any size)")  # fmt: skip
    return datatype, shape


def _binary_tensor(item: dict[str, Any], spec: TensorSpec, raw: bytes) -> npt.NDArray[Any]:
    where = f"input {spec.name!r}"
    datatype, shape = _header(item, spec)
    count = math.prod(shape)
    if datatype == "BYTES":
        elements, position = [], 0
        while position < len(raw):
            if position + 4 > len(raw):
                raise RequestError(f"{where}: a BYTES element's 4-byte length is cut off at byte {position}")
            (length,) = struct.unpack_from("<I", raw, position)
            position += 4
            if position + length > len(raw):
                raise RequestError(f"{where}: a BYTES element of {length} bytes runs past binary_data_size")
            try:
                elements.append(raw[position : position + length].decode())
            except UnicodeDecodeError:
                raise RequestError(f"{where}: BYTES element {len(elements)} is not UTF-8 text") from None
            position += length
        if len(elements) != count:
            raise RequestError(f"{where}: {len(elements)} BYTES elements, shape {_fmt_shape(shape)} needs {count}")
        return np.array(elements, dtype=object).reshape(shape)
    dtype = np.dtype(DTYPES[datatype]).newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise RequestError(f"{where}: binary_data_size is {len(raw)} bytes; shape {_fmt_shape(shape)} of {datatype} "
                           f"needs {count * dtype.itemsize}")  # fmt: skip
    array = np.frombuffer(raw, dtype=dtype).astype(DTYPES[datatype])
    if datatype == "BOOL" and raw.strip(b"\x00\x01"):
        raise RequestError(f"{where}: BOOL bytes must be 0 or 1")
    return array.reshape(shape)


def _tensor(item: dict[str, Any], spec: TensorSpec) -> npt.NDArray[Any]:
    where = f"input {spec.name!r}"
    datatype, shape = _header(item, spec)
    data = item.get("data")
    if not isinstance(data, list):
        raise RequestError(f"{where}: data must be a list, flat or nested")
    count = math.prod(shape)
    try:
        array = np.array(data)
    except ValueError as exc:
        raise RequestError(f"{where}: data is not a regular array (nested lists of different lengths)") from exc
    if array.size != count and not (count == 0 and array.size == 0):
        raise RequestError(f"{where}: data has {array.size} elements, shape {_fmt_shape(shape)} needs {count}")
    if array.ndim > 1 and list(array.shape) != shape:
        raise RequestError(f"{where}: nested data has shape {_fmt_shape(array.shape)}, not {_fmt_shape(shape)}")
    kind = array.dtype.kind
    if array.size and datatype in ACCEPTED_KINDS:
        if kind != ACCEPTED_KINDS[datatype]:
            raise RequestError(
                f"{where}: {datatype} data must be all {'booleans' if datatype == 'BOOL' else 'strings'}"
            )
    elif array.size:
        allowed = INTEGER_KINDS if datatype.startswith(("INT", "UINT")) else FLOAT_KINDS
        if kind not in allowed:
            what = "integers" if allowed == INTEGER_KINDS else "numbers"
            raise RequestError(f"{where}: {datatype} data must be all {what}")
        if allowed == INTEGER_KINDS:
            info = np.iinfo(DTYPES[datatype])
            if array.min() < info.min or array.max() > info.max:
                raise RequestError(f"{where}: a value is outside the range of {datatype}")
        elif datatype != "FP64" and kind == "f":
            limit = np.finfo(DTYPES[datatype]).max
            if np.abs(array).max() > limit:
                raise RequestError(f"{where}: a value is outside the range of {datatype}")
    return array.astype(DTYPES[datatype], copy=False).reshape(shape)


def datatype_of(array: npt.NDArray[Any]) -> str:
    """The V2 datatype of an output array."""
    kind = array.dtype.kind
    if kind in "OUS":
        return "BYTES"
    for name, dtype in DTYPES.items():
        if dtype is not np.object_ and array.dtype == np.dtype(dtype):
            return name
    return "FP64"


def output_tensor(name: str, array: npt.NDArray[Any]) -> dict[str, Any]:
    """An output tensor in V2 form, data flattened row-major."""
    datatype = datatype_of(array)
    values = array.astype(str) if datatype == "BYTES" else array
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": values.ravel().tolist()}


def binary_output(name: str, array: npt.NDArray[Any]) -> tuple[dict[str, Any], bytes]:
    """An output tensor for the binary extension: its header (``parameters.binary_data_size``, no data) and its
    bytes (row-major, little-endian; BYTES elements length-prefixed)."""
    datatype = datatype_of(array)
    if datatype == "BYTES":
        parts = []
        for element in array.astype(str).ravel():
            encoded = str(element).encode()
            parts += [struct.pack("<I", len(encoded)), encoded]
        raw = b"".join(parts)
    else:
        raw = np.ascontiguousarray(array, dtype=np.dtype(DTYPES[datatype]).newbyteorder("<")).tobytes()
    header = {"name": name, "shape": list(array.shape), "datatype": datatype,
              "parameters": {"binary_data_size": len(raw)}}  # fmt: skip
    return header, raw
