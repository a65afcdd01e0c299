"""The V2 request validator: every bad request is a RequestError naming the input and the reason."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_operator.server.validation import RequestError, Signature, output_tensor, parse_inputs

SIG = Signature.parse({
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}, {"name": "ids", "datatype": "INT64",
                                                                        "shape": [-1]}],
})  # fmt: skip


def request(x: Any = None, ids: Any = None, **over: Any) -> dict[str, Any]:
    tensors = [
        {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": x if x is not None else [1, 2, 3, 4, 5, 6]},
        {"name": "ids", "datatype": "INT64", "shape": [2], "data": ids if ids is not None else [7, 8]},
    ]
    tensors[0].update(over)
    return {"inputs": tensors}


def test_flat_and_nested_data_give_the_same_arrays() -> None:
    flat = parse_inputs(request(), SIG)
    nested = parse_inputs(request(x=[[1, 2, 3], [4, 5, 6]]), SIG)
    assert flat["x"].dtype == np.float32 and flat["x"].shape == (2, 3)
    np.testing.assert_array_equal(flat["x"], nested["x"])
    assert flat["ids"].dtype == np.int64 and flat["ids"].tolist() == [7, 8]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be a JSON object"),
        ({}, "'inputs' must be a non-empty list"),
        ({"inputs": [1]}, "inputs[0] must be an object"),
        ({"inputs": [{"name": 3}]}, "inputs[0].name must be a string"),
        (request(name="z"), "input 'z' is not in the signature"),
        ({"inputs": request()["inputs"][:1]}, "missing input(s): 'ids'"),
        ({"inputs": request()["inputs"] + request()["inputs"][:1]}, "input 'x' is given twice"),
        (request(datatype="FP64"), "input 'x': datatype 'FP64' does not match the signature's FP32"),
        (request(datatype="BF16"), "input 'x': BF16 has no numpy type"),
        (request(shape=[2, 4], x=list(range(8))), "input 'x': shape [2, 4] does not match the signature's [-1, 3]"),
        (request(shape=[6]), "input 'x': shape [6] does not match"),
        (request(shape=[2, -3]), "input 'x': shape must be a list of non-negative integers"),
        (request(shape="2x3"), "input 'x': shape must be a list of non-negative integers"),
        (request(x=[1, 2, 3]), "input 'x': data has 3 elements, shape [2, 3] needs 6"),
        (request(x=[[1, 2, 3], [4, 5]]), "input 'x': data is not a regular array"),
        (request(x=[[1, 2], [3, 4], [5, 6]]), "input 'x': nested data has shape [3, 2], not [2, 3]"),
        (request(x=["a", "b", "c", "d", "e", "f"]), "input 'x': FP32 data must be all numbers"),
        (request(x=[True] * 6), "input 'x': FP32 data must be all numbers"),
        (request(x=[1e39] * 6), "input 'x': a value is outside the range of FP32"),
        (request(ids=[1.5, 2]), "input 'ids': INT64 data must be all integers"),
        (request(ids=[2**63, 1]), "input 'ids'"),
        (request(x="123456"), "input 'x': data must be a list"),
    ],
)
def test_bad_requests_name_the_input_and_reason(body: Any, message: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_inputs(body, SIG)
    assert message in str(info.value)


def test_output_tensor() -> None:
    assert output_tensor("p", np.array([[0.25, 0.75]])) == {
        "name": "p", "shape": [1, 2], "datatype": "FP64", "data": [0.25, 0.75]}  # fmt: skip
    assert output_tensor("l", np.array(["a", "b"], dtype=object))["datatype"] == "BYTES"
    assert output_tensor("i", np.array([1, 2], dtype=np.int32))["datatype"] == "INT32"


# --- properties ---

finite = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=200, deadline=None)
@given(rows=st.integers(0, 20), data=st.data())
def test_any_well_formed_request_is_accepted_exactly(rows: int, data: st.DataObject) -> None:
    x = data.draw(st.lists(st.lists(finite, min_size=3, max_size=3), min_size=rows, max_size=rows))
    ids = data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=rows, max_size=rows))
    flat = data.draw(st.booleans())
    body = {"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [rows, 3], "data": [v for r in x for v in r] if flat else x},
        {"name": "ids", "datatype": "INT64", "shape": [rows], "data": ids}]}  # fmt: skip
    arrays = parse_inputs(body, SIG)
    assert arrays["x"].shape == (rows, 3) and arrays["ids"].shape == (rows,)
    np.testing.assert_array_equal(arrays["x"], np.array(x, dtype=np.float32).reshape(rows, 3))
    assert arrays["ids"].tolist() == ids


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(tensor=st.dictionaries(st.sampled_from(["name", "datatype", "shape", "data"]), json_values))
def test_arbitrary_json_is_accepted_or_refused_cleanly(tensor: dict[str, Any]) -> None:
    """Whatever JSON arrives, the validator returns arrays that fit the signature or raises RequestError."""
    try:
        arrays = parse_inputs({"inputs": [tensor, request()["inputs"][1]]}, SIG)
    except RequestError as exc:
        assert str(exc)
    else:
        assert arrays["x"].dtype == np.float32 and arrays["x"].ndim == 2 and arrays["x"].shape[1] == 3
        assert all(math.isfinite(v) for v in arrays["x"].ravel().tolist())
