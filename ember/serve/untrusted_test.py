import pytest

from ember.serve.errors import BadRequest
from ember.serve.untrusted import decimal_int, tensor_shape


@pytest.mark.parametrize("text, number", [("0", 0), ("17", 17), ("007", 7), ("9" * 30, int("9" * 30)),
                                          ("²", None), ("١٢", None), ("+1", None), (" 1", None), ("1_0", None),
                                          ("-1", None), ("", None), ("1.0", None)])
def test_decimal_int_takes_ascii_digits_only(text, number):
    assert decimal_int(text) == number


@pytest.mark.parametrize("shape", [[1, 4], [0, 4], [], [16], [4, 0, 4]])
def test_shapes_within_the_body_pass(shape):
    assert tensor_shape(shape, "input 'x'", max_elements=16) == tuple(shape)


@pytest.mark.parametrize("shape, message", [
    ([True, 4], 'expected "shape" as a list of non-negative integers, got [True, 4]'),
    ([1.0, 4], "non-negative integers, got [1.0, 4]"),
    ([-1, 4], "non-negative integers, got [-1, 4]"),
    ("[1, 4]", "non-negative integers, got '[1, 4]'"),
    (None, "non-negative integers, got None"),
    ([1] * 70, "at most 32 dimensions, got 70"),
    ([0, 2 ** 62, 2 ** 62], "holds more elements than a body of 16 bytes can carry"),
    ([17], "holds more elements than a body of 16 bytes"),
    ([2 ** 63, 0], "holds more elements"),
])
def test_shapes_a_client_can_craft_are_refused_by_name(shape, message):
    with pytest.raises(BadRequest) as refused:
        tensor_shape(shape, "input 'x'", max_elements=16)
    assert refused.value.message.startswith("input 'x': ") and message in refused.value.message
