import json

import numpy as np
import pytest
import torch

import ember
from ember import layers as L
from ember.errors import ShapeError
from testing.layers import assert_matches_keras, ember_predict, keras, rebuilt

X = np.random.default_rng(0).uniform(0, 1, size=(6, 9, 12, 3)).astype("float32")
AFFINE = {  # the options both layers take, and ember's transform given the parameters Keras drew
    "RandomRotation": (dict(factor=0.3), lambda layer, x, drawn: layer.rotate(x, drawn["angle"])),
    "RandomZoom": (dict(height_factor=0.4, width_factor=(-0.3, 0.5)),
                   lambda layer, x, drawn: layer.zoom(x, drawn["height_zoom"][:, 0], drawn["width_zoom"][:, 0])),
    "RandomTranslation": (dict(height_factor=0.4, width_factor=0.6),  # Keras' translations are (right, down)
                          lambda layer, x, drawn: layer.translate(x, drawn["translations"][:, 1],
                                                                  drawn["translations"][:, 0])),
}
OTHERS = {
    "RandomFlip": (dict(mode="horizontal_and_vertical"), lambda layer, x, drawn: layer.flip(x, drawn["flips"].view(-1))),
    "RandomCrop": (dict(height=5, width=7), lambda layer, x, drawn: layer.crop(x, *drawn)),
    "RandomContrast": (dict(factor=(0.3, 0.6), value_range=(0, 1)),
                       lambda layer, x, drawn: layer.adjust(x, drawn["contrast_factor"].view(-1))),
    "RandomBrightness": (dict(factor=0.4, value_range=(0, 1)),
                         lambda layer, x, drawn: layer.adjust(x, drawn["rgb_delta"].view(-1))),
}
IDENTITY_AT_INFERENCE = {name: options for name, (options, _) in {**AFFINE, **OTHERS}.items() if name != "RandomCrop"}


def _in_format(x, data_format):
    return x if data_format == "channels_last" else np.ascontiguousarray(np.moveaxis(x, -1, 1))


def _keras_training_transform(class_name, options, x):
    """Keras' layer trained on `x` (channels_last): its output and the parameters it drew."""
    layer = getattr(keras().layers, class_name)(**options, seed=1)
    drawn = layer.get_random_transformation(x, training=True)
    images = layer.transform_images(torch.from_numpy(x.copy()), drawn, training=True)
    on_cpu = lambda v: v.cpu() if isinstance(v, torch.Tensor) else v  # noqa: E731 (Keras may run on a GPU)
    drawn = {k: on_cpu(v) for k, v in drawn.items()} if isinstance(drawn, dict) else tuple(map(on_cpu, drawn))
    return np.asarray(images.cpu()), drawn


def _ember_transform(class_name, options, apply, drawn, x, data_format):
    layer = getattr(L, class_name)(**options, data_format=data_format)
    out = apply(layer, torch.from_numpy(_in_format(x, data_format)), drawn).numpy()
    return out if data_format == "channels_last" else np.moveaxis(out, 1, -1)


@pytest.mark.parametrize("class_name", sorted(IDENTITY_AT_INFERENCE))
def test_inference_returns_the_input_as_keras(class_name):
    options = IDENTITY_AT_INFERENCE[class_name]
    assert_matches_keras(getattr(keras().layers, class_name)(**options),
                         lambda data_format: getattr(L, class_name)(**options, data_format=data_format), X)
    assert np.array_equal(ember_predict(getattr(L, class_name)(**options), X), X)


@pytest.mark.parametrize("height, width", [(5, 7), (9, 4), (12, 15)])
def test_random_crop_at_inference_resizes_the_centred_box_of_the_aspect_ratio(height, width):
    # What Keras documents (keras.preprocessing.image.smart_resize); Keras 3's code returns the uncropped
    # input instead, against its own output shape (keras-team/keras#21868).
    expected = np.asarray(keras().preprocessing.image.smart_resize(X, (height, width)))
    for data_format in ("channels_last", "channels_first"):
        layer = rebuilt(L.RandomCrop(height, width, seed=3, data_format=data_format))
        got = ember_predict(layer, _in_format(X, data_format))
        got = got if data_format == "channels_last" else np.moveaxis(got, 1, -1)
        assert np.abs(got - expected).max() <= 1e-5


@pytest.mark.parametrize("class_name", sorted({**AFFINE, **OTHERS}))
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_training_transform_is_keras_for_the_same_parameters(class_name, data_format):
    options, apply = {**AFFINE, **OTHERS}[class_name]
    expected, drawn = _keras_training_transform(class_name, options, X)
    got = _ember_transform(class_name, options, apply, drawn, X, data_format)
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-5


@pytest.mark.parametrize("class_name", sorted(AFFINE))
@pytest.mark.parametrize("fill_mode", ["reflect", "wrap", "constant", "nearest"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_every_fill_mode_and_interpolation_is_keras(class_name, fill_mode, interpolation):
    # The whole image, borders included: grid_sample's reflection and border padding, its zeros
    # blended with fill_value, and a circularly padded copy for "wrap" give Keras' corner-by-corner
    # values. (Nearest interpolation could differ at exact half-pixel ties, which these draws avoid.)
    options = {**AFFINE[class_name][0], "fill_mode": fill_mode, "interpolation": interpolation, "fill_value": 0.7}
    expected, drawn = _keras_training_transform(class_name, options, X)
    got = _ember_transform(class_name, options, AFFINE[class_name][1], drawn, X, "channels_last")
    assert np.abs(got - expected).max() <= 1e-5


def _drawn(layer, method, x, calls=1):
    """The parameters `layer` drew in `calls` training calls on `x` (what it passed to `method`), concatenated."""
    seen, apply = [], getattr(layer, method)
    setattr(layer, method, lambda images, *parameters: seen.append(parameters) or apply(images, *parameters))
    layer.train()
    for _ in range(calls):
        layer(x)
    return [torch.cat([p.reshape(-1) for p in parameter]) for parameter in zip(*seen)]


def _spans(values, low, high, slack):
    """Within [low, high] and reaching within `slack` of both ends."""
    return low <= float(values.min()) < low + slack and high - slack < float(values.max()) <= high


def test_draws_follow_keras_ranges():
    ember.seed(0)
    images = torch.rand(400, 3, 9, 12)
    (degrees,) = _drawn(L.RandomRotation((-0.1, 0.25)), "rotate", images)
    assert _spans(degrees, -36, 90, 2)
    height_zooms, width_zooms = _drawn(L.RandomZoom(0.3, (-0.2, 0.1)), "zoom", images)
    assert _spans(height_zooms, 0.7, 1.3, 0.01) and _spans(width_zooms, 0.8, 1.1, 0.01)
    height_zooms, width_zooms = _drawn(L.RandomZoom(0.3), "zoom", images)
    assert torch.equal(height_zooms, width_zooms)  # width_factor=None keeps the aspect ratio
    down, right = _drawn(L.RandomTranslation(0.2, (0.1, 0.3)), "translate", images)
    assert _spans(down, -0.2 * 9, 0.2 * 9, 0.05) and _spans(right, 0.1 * 12, 0.3 * 12, 0.05)
    (flips,) = _drawn(L.RandomFlip("horizontal"), "flip", images, calls=5)
    assert 0.45 < float(flips.float().mean()) < 0.55
    (factors,) = _drawn(L.RandomContrast(0.5), "adjust", images)
    assert _spans(factors, 1.0, 1.5, 0.01)  # Keras 3: one number f draws in [1, 1 + f]
    (factors,) = _drawn(L.RandomContrast((0.2, 0.5)), "adjust", images)
    assert _spans(factors, 0.8, 1.5, 0.01)
    (deltas,) = _drawn(L.RandomBrightness(0.2), "adjust", images)
    assert _spans(deltas, -51, 51, 1)
    top, left = _drawn(L.RandomCrop(5, 7), "crop", images, calls=200)  # one box per batch
    assert set(top.tolist()) == set(range(5)) and set(left.tolist()) == set(range(6))


def test_random_crop_draws_any_box_that_fits_and_resizes_smaller_images():
    # Keras 3 crops the centre when one side equals the target; any box of a wider image is drawn here.
    _, left = _drawn(L.RandomCrop(5, 7), "crop", torch.rand(2, 3, 5, 12), calls=100)
    assert set(left.tolist()) == set(range(6))
    small, crop = torch.rand(2, 3, 4, 6), L.RandomCrop(5, 7)
    assert torch.equal(crop.train()(small), crop.eval()(small))


def test_eval_returns_the_input_and_training_changes_it():
    x = torch.rand(4, 3, 9, 12) * 255
    for layer in (L.RandomFlip(seed=1), L.RandomRotation(0.2), L.RandomZoom(0.3), L.RandomTranslation(0.2, 0.2),
                  L.RandomContrast(0.5), L.RandomBrightness(0.3)):
        assert layer.eval()(x) is x
        ember.seed(1)
        assert not torch.equal(layer.train()(x), x), type(layer).__name__
    crop = L.RandomCrop(5, 7)
    assert crop.eval()(x).shape == crop.train()(x).shape == (4, 3, 5, 7)


def test_one_image_and_integer_images():
    image = torch.randint(0, 256, (3, 9, 12), dtype=torch.uint8)
    for layer in (L.RandomRotation(0.2), L.RandomCrop(5, 7)):
        for training in (True, False):
            out = layer.train(training)(image)
            assert out.dtype == torch.float32 and out.shape[0] == 3 and out.dim() == 3  # floats, as Keras outputs
    assert torch.equal(L.RandomFlip().eval()(image), image.float())


def test_ember_seed_repeats_a_run():
    model = ember.Sequential([L.RandomFlip(), L.RandomRotation(0.2), L.RandomZoom(0.2), L.RandomTranslation(0.1, 0.1),
                              L.RandomCrop(6, 8), L.RandomContrast(0.3), L.RandomBrightness(0.2)]).train()
    x = torch.rand(8, 3, 9, 12) * 255
    ember.seed(5)
    first = model(x)
    ember.seed(5)
    assert torch.equal(model(x), first)
    assert not torch.equal(model(x), first)


def test_a_seeded_layer_has_its_own_stream_saved_in_its_state():
    x = torch.rand(8, 3, 9, 12)
    layer, twin = L.RandomRotation(0.3, seed=11).train(), L.RandomRotation(0.3, seed=11).train()
    first = layer(x)
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(twin(x), first)
    second = layer(x)
    assert not torch.equal(second, first) and int(layer.draws) == 2
    resumed = rebuilt(layer).train()  # config and state_dict: the stream continues where it was
    assert int(resumed.state_dict()["draws"]) == 2 and torch.equal(resumed(x), layer(x))
    assert "draws" not in L.RandomRotation(0.3).state_dict()


@pytest.mark.parametrize("make, message", [
    (lambda: L.RandomRotation(1.5), r"RandomRotation factor must be a number or a pair of numbers in \[-1, 1\], "
                                    r"got 1.5"),
    (lambda: L.RandomRotation((0.1, 0.2, 0.3)), r"pair of numbers in \[-1, 1\], got \(0.1, 0.2, 0.3\)"),
    (lambda: L.RandomZoom(-1.0), r"RandomZoom height_factor .* in \(-1, 1\], got -1.0"),
    (lambda: L.RandomTranslation(0.1, "0.2"), r"RandomTranslation width_factor .* in \[-1, 1\], got '0.2'"),
    (lambda: L.RandomContrast(-0.1), r"RandomContrast factor .* in \[0, 1\], got -0.1"),
    (lambda: L.RandomBrightness(0.2, value_range=(0, 1, 2)), r"value_range must be a pair of numbers \(low, high\), "
                                                             r"got \(0, 1, 2\)"),
    (lambda: L.RandomRotation(0.1, fill_mode="mirror"),
     r"fill_mode must be one of \('reflect', 'wrap', 'constant', 'nearest'\), got 'mirror'"),
    (lambda: L.RandomZoom(0.1, interpolation="bicubic"), r"interpolation must be one of .*, got 'bicubic'"),
    (lambda: L.RandomFlip("diagonal"), r"mode must be one of \('horizontal', 'vertical', 'horizontal_and_vertical'\)"),
    (lambda: L.RandomCrop(0, 5), r"RandomCrop height and width must be positive integers, got 0, 5"),
    (lambda: L.RandomFlip(seed="1"), r"RandomFlip seed must be an integer or None, got '1'"),
])
def test_bad_arguments_name_what_was_expected_and_what_came(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_inputs_that_are_not_images_are_refused():
    with pytest.raises(ShapeError, match=r"expected input of shape \(batch, channels, H, W\), received \(batch, 3, 4, "):
        L.RandomFlip()(torch.zeros(2, 3, 4, 5, 6))
    built = L.RandomFlip()
    built(torch.zeros(2, 3, 4, 5))
    with pytest.raises(ShapeError, match=r"a 4-d batch of images \(or one 3-d image\), received \(2, 3, 4, 5, 6\)"):
        built(torch.zeros(2, 3, 4, 5, 6))
    with pytest.raises(ShapeError, match=r"\(batch, H, W, channels\)"):
        ember.Sequential([L.Input((9, 12)), L.RandomZoom(0.1, data_format="channels_last")])


def _augmented_classifier(data_format):
    image = dict(data_format=data_format)
    return [L.RandomFlip("horizontal", **image), L.RandomRotation(0.1, fill_mode="constant", seed=2, **image),
            L.RandomZoom(0.2, **image), L.RandomTranslation(0.1, 0.1, fill_mode="wrap", **image),
            L.RandomCrop(8, 10, seed=4, **image), L.RandomContrast(0.3, **image), L.RandomBrightness(0.2, **image),
            L.Rescaling(1 / 255, data_format=data_format), L.Conv2D(4, 3, **image), L.Flatten(), L.Dense(2)]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_models_infer_shapes_summarize_save_and_load(tmp_path, data_format):
    shape = (9, 12, 3) if data_format == "channels_last" else (3, 9, 12)
    ember.seed(0)
    model = ember.Sequential([L.Input(shape), *_augmented_classifier(data_format)])
    cropped = (8, 10, 3) if data_format == "channels_last" else (3, 8, 10)
    assert model.layers[4].output_shape == cropped
    assert "random_rotation" in str(model.summary(print_fn=None))
    json.dumps(model.get_config())
    x = torch.rand(2, *shape) * 255
    model.train()(x)  # the seeded layers draw once
    model.eval()
    with torch.no_grad():
        expected = model(x)
    model.save(tmp_path / "model.ember")
    loaded = ember.load(tmp_path / "model.ember")
    assert int(loaded.layers[1].draws) == 1
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), expected)
    inputs = ember.Input(shape)
    functional = ember.Model(inputs, L.RandomCrop(8, 10, data_format=data_format)(L.RandomFlip(**{
        "data_format": data_format})(inputs)))
    assert tuple(functional(x).shape[1:]) == cropped


def test_an_export_holds_only_the_inference_behaviour(tmp_path):
    onnx = pytest.importorskip("onnx")
    from ember.deploy.export import export

    ember.seed(0)
    model = ember.Sequential([L.Input((3, 12, 16)), *_augmented_classifier("channels_first")])
    report = export(model, tmp_path, format="onnx", example=torch.rand(2, 3, 12, 16) * 255)
    assert report.max_abs_diff < 1e-4
    operators = {node.op_type for node in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    assert not operators & {"GridSample", "RandomUniform", "RandomUniformLike", "Where"}, operators



def test_keras_models_with_augmentation_layers_convert(tmp_path):
    k = keras()
    inputs = k.Input((9, 12, 3))
    x = k.layers.RandomFlip(seed=1)(inputs)
    x = k.layers.RandomRotation(0.2, fill_mode="nearest")(x)
    x = k.layers.RandomZoom(0.2, 0.1, interpolation="nearest")(x)
    x = k.layers.RandomTranslation(0.1, 0.2, fill_mode="constant", fill_value=1.0)(x)
    x = k.layers.RandomContrast(0.3)(x)
    x = k.layers.RandomBrightness((-0.1, 0.2), value_range=(0, 1), seed=5)(x)
    x = k.layers.Conv2D(4, 3)(k.layers.Rescaling(2.0, -1.0)(x))
    k.Model(inputs, x).save(tmp_path / "augmented.keras")
    cropping = k.Sequential([k.Input((9, 12, 3)), k.layers.RandomCrop(5, 7)])  # its config always holds a seed
    cropping.save(tmp_path / "cropping.keras")
    expected = k.models.load_model(tmp_path / "augmented.keras").predict(X, verbose=0)
    for data_format in ("channels_last", "channels_first"):
        model = ember.from_keras(tmp_path / "augmented.keras", data_format=data_format)
        got = ember_predict(model, _in_format(X, data_format))
        assert np.abs(_in_format(expected, data_format) - got).max() <= 1e-5
        crop = ember.from_keras(tmp_path / "cropping.keras", data_format=data_format)
        got = ember_predict(crop, _in_format(X, data_format))
        assert np.abs(got - _in_format(k.preprocessing.image.smart_resize(X, (5, 7)), data_format)).max() <= 1e-5
    rotation = next(m for m in model.modules() if isinstance(m, L.RandomRotation))
    assert (rotation.lower, rotation.upper, rotation.fill_mode) == (-0.2, 0.2, "nearest")
