"""What each Keras layer becomes in ember, and how its weights are converted, once, at load time.

`KERAS_LAYERS[class_name]` gives a `KerasLayer`: `build(config, layout, shape)` returns the
ember modules (the first holds the weights) and the output layout; `weights(arrays, config,
layout, shape)` returns torch-layout arrays by parameter name. `accepts` says which input
layouts the ember layer computes on directly (others are converted to Keras' layout first).

Layouts: "keras" (the tensor Keras had), "channels_first" (Keras' last axis moved to axis
1, for NCHW models), ("flat_channels_first", keras_shape) (a Flatten of channels_first
features, in C,H,W order instead of Keras' H,W,C).
"""
from dataclasses import dataclass

import numpy as np
import torch

from ember.define import layers as L
from ember.define.activations import ACTIVATIONS
from ember.define.layers.preprocessing import broadcast_statistic
from ember.define.layers.resizing import TORCH_MODES
from ember.define.layers.upsampling import INTERPOLATIONS
from ember.define.regularizers import L1L2

KERAS = "keras"
CHANNELS_FIRST = "channels_first"
MAX_CONFIG_STATISTICS = 2**20  # values a Normalization's config may broadcast its given mean and variance to
AXIS_ACTIVATIONS = ("softmax", "log_softmax", "glu", "sparsemax")  # computed along the last axis


class UnsupportedConfig(ValueError):
    """A supported layer class used with options ember cannot reproduce exactly."""


@dataclass
class KerasLayer:
    build: object
    weights: object = None
    accepts: tuple = (KERAS,)
    weights_in_config: bool = False  # its state may come from the config alone (no arrays in the file)
    call_options: tuple = ()  # true/false keyword arguments of a call in the graph its module takes


def is_flat(layout):
    return isinstance(layout, tuple)


def activation_name(value, keras2=False):
    """Keras' activation name -> ember's; custom (serialized) activations are refused."""
    if value is None:
        return "linear"
    if isinstance(value, dict):
        value = value.get("config", {}).get("name") if value.get("module") == "keras.activations" else value
    if not isinstance(value, str):
        raise UnsupportedConfig(f"custom activation {value!r}")
    name = value.lower()
    if name == "hard_sigmoid" and keras2:
        return "keras2_hard_sigmoid"  # tf.keras 2 used clip(0.2x + 0.5), Keras 3 relu6(x + 3) / 6
    if name not in ACTIVATIONS:
        raise UnsupportedConfig(f"activation {value!r}")
    return name


# Keras' regularizer arguments -> the ember parameters each may penalize: the first one the layer has.
_PENALIZED = {"kernel_regularizer": ("weight_ih", "kernel", "input_conv.weight", "weight"),
              "bias_regularizer": ("bias_ih", "input_conv.bias", "bias"),
              "recurrent_regularizer": ("weight_hh", "recurrent_conv.weight"),
              "embeddings_regularizer": ("weight",), "depthwise_regularizer": ("depthwise_weight", "weight"),
              "pointwise_regularizer": ("weight",), "gamma_regularizer": ("weight",), "beta_regularizer": ("bias",)}
_REGULARIZER_STRINGS = {"l1": (0.01, 0.0), "l2": (0.0, 0.01), "l1_l2": (0.01, 0.01)}
_REGULARIZER_CLASSES = {"L1": (0.01, 0.0), "L2": (0.0, 0.01), "L1L2": (0.0, 0.0)}  # their defaults


def keras_regularizer(value):
    """Keras' L1, L2 or L1L2, as a string ("l2") or its serialized class, as ember's L1L2."""
    if isinstance(value, str) and value.lower() in _REGULARIZER_STRINGS:
        return L1L2(*_REGULARIZER_STRINGS[value.lower()])
    if isinstance(value, dict) and value.get("class_name") in _REGULARIZER_CLASSES \
            and isinstance(value.get("config") or {}, dict):
        config = value.get("config") or {}
        l1, l2 = _REGULARIZER_CLASSES[value["class_name"]]
        return L1L2(config.get("l1", l1), config.get("l2", l2))
    raise UnsupportedConfig(f"the regularizer {value!r:.80} (L1, L2 and L1L2 are)")


def apply_regularizers(module, config):
    """Keras' `*_regularizer` arguments in `config` as penalties on `module`'s parameters, and its
    `activity_regularizer`, so that fine-tuning minimises what Keras' fit would."""
    names = {name for name, _ in module.named_parameters()}
    for argument, candidates in _PENALIZED.items():
        if config.get(argument) is None:
            continue
        parameter = next((candidate for candidate in candidates if candidate in names), None)
        if parameter is None or not hasattr(module, "regularize"):
            raise UnsupportedConfig(f"{argument} on a {type(module).__name__}")
        module.regularize(parameter, keras_regularizer(config[argument]))
    if config.get("activity_regularizer") is not None:
        if not hasattr(module, "activity_regularizer"):
            raise UnsupportedConfig(f"activity_regularizer on a {type(module).__name__}")
        module.activity_regularizer = keras_regularizer(config["activity_regularizer"])


def _image_format(config, layout):
    if layout == CHANNELS_FIRST:
        return "channels_first"
    return config.get("data_format") or "channels_last"


def _with_activation(modules, activation, layout):
    """Image layers apply their activation in NCHW order internally, so activations along
    an axis (softmax...) become a separate layer acting on the channel axis."""
    if activation in AXIS_ACTIVATIONS:
        axis_layer = L.Softmax(axis=1) if layout == CHANNELS_FIRST and activation == "softmax" \
            else L.Activation(activation)
        if layout == CHANNELS_FIRST and activation != "softmax":
            raise UnsupportedConfig(f"activation {activation!r} on channels_first features")
        modules.append(axis_layer)
    return modules


def _conv_args(config):
    padding = config.get("padding", "valid")
    if padding not in ("valid", "same", "causal"):  # causal: Conv1D only, as in Keras
        raise UnsupportedConfig(f"padding={padding!r}")
    return dict(strides=config.get("strides", 1), padding=padding, dilation_rate=config.get("dilation_rate", 1))


def _build_conv(cls, extra):
    def build(config, layout, shape, keras2=False):
        activation = activation_name(config.get("activation"), keras2)
        inner = None if activation in AXIS_ACTIVATIONS else activation
        kwargs = {k: config[k] for k in extra if k in config}
        layer = cls(kernel_size=config["kernel_size"], **kwargs, **_conv_args(config), activation=inner,
                    use_bias=config.get("use_bias", True), data_format=_image_format(config, layout),
                    name=config["name"])
        return _with_activation([layer], activation, layout), layout
    return build


def conv_kernel(kernel):
    """Keras' convolution kernel (*spatial, in / groups, out) as torch's (out, in / groups, *spatial)."""
    return np.transpose(kernel, (kernel.ndim - 1, kernel.ndim - 2) + tuple(range(kernel.ndim - 2)))


def _conv_weights(arrays, config, layout, shape):
    return _with_bias({"weight": conv_kernel(arrays[0])}, arrays, 1)


def _depthwise_kernel(kernel):
    kh, kw, channels, multiplier = kernel.shape  # output channel c * multiplier + m, as in Keras
    return kernel.reshape(kh, kw, channels * multiplier).transpose(2, 0, 1)[:, None]


def _depthwise_weights(arrays, config, layout, shape):
    return _with_bias({"weight": _depthwise_kernel(arrays[0])}, arrays, 1)


def _separable_weights(arrays, config, layout, shape):
    pointwise = arrays[1]  # (1, 1, in * multiplier, out)
    out = {"depthwise_weight": _depthwise_kernel(arrays[0]), "weight": pointwise.transpose(3, 2, 0, 1)}
    return _with_bias(out, arrays, 2)


def _with_bias(out, arrays, index):
    if len(arrays) > index:
        out["bias"] = arrays[index]
    return out


def _chw_order(keras_shape, rows):
    """Index map: position i of a channels-first flatten holds Keras' flat feature order[i].
    `rows`, the length of the file's array, is checked first: the shape comes from the
    config, which may ask for any size."""
    size = int(np.prod(keras_shape, dtype=object))
    if size != rows:
        raise ValueError(f"{rows} rows, expected {size} features from a flatten of {tuple(keras_shape)}")
    return np.arange(size).reshape(keras_shape).transpose(
        (len(keras_shape) - 1,) + tuple(range(len(keras_shape) - 1))).reshape(-1)


def _build_dense(config, layout, shape, keras2=False):
    activation = activation_name(config.get("activation"), keras2)
    return [L.Dense(config["units"], activation=activation, use_bias=config.get("use_bias", True),
                    name=config["name"])], KERAS


def _dense_weights(arrays, config, layout, shape):
    kernel = arrays[0]
    if is_flat(layout):
        kernel = kernel[_chw_order(layout[1], len(kernel))]  # rows from Keras' H,W,C order to ember's C,H,W
    return _with_bias({"weight": kernel.T}, arrays, 1)


def _build_pool(cls):
    def build(config, layout, shape, keras2=False):
        return [cls(pool_size=config.get("pool_size", 2), strides=config.get("strides"),
                    padding=config.get("padding", "valid"), data_format=_image_format(config, layout),
                    name=config["name"])], layout
    return build


def _build_global_pool(cls):
    def build(config, layout, shape, keras2=False):
        keepdims = config.get("keepdims", False)
        return [cls(keepdims=keepdims, data_format=_image_format(config, layout), name=config["name"])], \
            (layout if keepdims else KERAS)
    return build


def _build_flatten(config, layout, shape, keras2=False):
    if layout == CHANNELS_FIRST and len(shape) > 1:
        return [L.Flatten(name=config["name"])], ("flat_channels_first", tuple(shape[1:]) + (shape[0],))
    return [L.Flatten(name=config["name"])], KERAS


def _batch_norm_axis_ok(config, layout, shape):
    axis = config.get("axis", -1)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    rank = len(shape) + 1
    if not isinstance(axis, int):
        raise UnsupportedConfig(f"axis={config.get('axis')!r}")
    return axis % rank


def _build_batch_norm(config, layout, shape, keras2=False):
    axis = _batch_norm_axis_ok(config, layout, shape)
    rank = len(shape) + 1
    if layout == CHANNELS_FIRST and axis == rank - 1 or layout == KERAS and axis == 1 and rank > 2:
        data_format = "channels_first"
    elif axis == rank - 1:
        data_format = "channels_last"
    else:
        raise UnsupportedConfig(f"BatchNormalization over axis {config.get('axis')} of a rank-{rank} tensor")
    if config.get("renorm") or config.get("synchronized"):
        raise UnsupportedConfig("renorm / synchronized batch normalization")
    layer = L.BatchNormalization(momentum=config.get("momentum", 0.99), epsilon=config.get("epsilon", 1e-3),
                                 center=config.get("center", True), scale=config.get("scale", True),
                                 data_format=data_format, name=config["name"])
    return [layer], layout


def _batch_norm_weights(arrays, config, layout, shape):
    names = (["weight"] if config.get("scale", True) else []) + (["bias"] if config.get("center", True) else [])
    out = dict(zip(names + ["running_mean", "running_var"], arrays))
    if is_flat(layout):
        order = _chw_order(layout[1], min((len(v) for v in out.values()), default=0))
        out = {k: v[order] for k, v in out.items()}
    return out


def _build_layer_norm(config, layout, shape, keras2=False):
    axis = config.get("axis", -1)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if not isinstance(axis, int) or axis % (len(shape) + 1) != len(shape) or config.get("rms_scaling"):
        raise UnsupportedConfig(f"LayerNormalization over axis {config.get('axis')!r}")
    return [L.LayerNormalization(epsilon=config.get("epsilon", 1e-3), center=config.get("center", True),
                                 scale=config.get("scale", True), name=config["name"])], KERAS


def _build_rms_norm(config, layout, shape, keras2=False):
    axis = config.get("axis", -1)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if not isinstance(axis, int) or axis % (len(shape) + 1) != len(shape):
        raise UnsupportedConfig(f"RMSNormalization over axis {config.get('axis')!r} (the last axis is)")
    return [L.RMSNormalization(config.get("epsilon", 1e-6), name=config["name"])], KERAS


def _rms_norm_weights(arrays, config, layout, shape):
    return {"scale": arrays[0]} if len(arrays) == 1 else {}


def _layer_norm_weights(arrays, config, layout, shape):
    names = (["weight"] if config.get("scale", True) else []) + (["bias"] if config.get("center", True) else [])
    return dict(zip(names, arrays))


def _build_embedding(config, layout, shape, keras2=False):
    return [L.Embedding(config["input_dim"], config["output_dim"], config.get("mask_zero", False),
                        name=config["name"])], KERAS


def _build_masking(config, layout, shape, keras2=False):
    return [L.Masking(_serialized_array(config.get("mask_value", 0.0)), name=config["name"])], layout


def _build_activation(config, layout, shape, keras2=False):
    name = activation_name(config.get("activation"), keras2)
    if layout == CHANNELS_FIRST and name in AXIS_ACTIVATIONS:
        if name != "softmax":
            raise UnsupportedConfig(f"activation {name!r} on channels_first features")
        return [L.Softmax(axis=1, name=config["name"])], layout
    return [L.Activation(name, name=config["name"])], layout


def _build_relu(config, layout, shape, keras2=False):
    max_value, slope = config.get("max_value"), config.get("negative_slope", 0.0)
    threshold = config.get("threshold", 0.0)
    if threshold or (slope and max_value is not None):
        raise UnsupportedConfig("ReLU with threshold, or with both negative_slope and max_value")
    if slope:
        return [L.LeakyReLU(slope, name=config["name"])], layout
    if max_value is None:
        return [L.ReLU(name=config["name"])], layout
    if float(max_value) == 6.0:
        return [L.Activation("relu6", name=config["name"])], layout
    raise UnsupportedConfig(f"ReLU(max_value={max_value})")


def _build_leaky_relu(config, layout, shape, keras2=False):
    slope = config.get("negative_slope", config.get("alpha", 0.3))  # tf.keras 2 called it alpha
    return [L.LeakyReLU(slope, name=config["name"])], layout


def _build_elu(config, layout, shape, keras2=False):
    return [L.ELU(config.get("alpha", 1.0), name=config["name"])], layout


def _build_prelu(config, layout, shape, keras2=False):
    shared = config.get("shared_axes") or []
    shared = [shared] if isinstance(shared, int) else shared
    return [L.PReLU([_channel_axis(axis, layout, shape) for axis in shared], name=config["name"])], layout


def _prelu_weights(arrays, config, layout, shape):
    alpha = arrays[0]  # Keras' input shape (no batch), 1 along the shared axes
    return {"alpha": np.moveaxis(alpha, -1, 0) if layout == CHANNELS_FIRST else alpha}


def _channel_axis(axis, layout, shape):
    """Keras axis (with batch) -> the same axis of the ember tensor."""
    rank = len(shape) + 1
    axis %= rank
    if layout != CHANNELS_FIRST or axis == 0:
        return axis
    return 1 if axis == rank - 1 else axis + 1


def _build_softmax(config, layout, shape, keras2=False):
    axis = config.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise UnsupportedConfig(f"Softmax over axes {axis}")
        axis = axis[0]
    return [L.Softmax(axis=_channel_axis(axis, layout, shape), name=config["name"])], layout


def _build_dropout(config, layout, shape, keras2=False):
    noise_shape = config.get("noise_shape")
    if noise_shape is not None and layout == CHANNELS_FIRST:  # Keras' last axis is ember's axis 1
        noise_shape = [noise_shape[0], noise_shape[-1], *noise_shape[1:-1]]
    return [L.Dropout(config["rate"], noise_shape=noise_shape, name=config["name"])], layout


def _build_edges(cls, argument):
    def build(config, layout, shape, keras2=False):
        return [cls(config[argument], data_format=_image_format(config, layout), name=config["name"])], layout
    return build


def _build_upsampling(cls):
    def build(config, layout, shape, keras2=False):
        interpolation = config.get("interpolation", "nearest")
        if interpolation not in INTERPOLATIONS:
            raise UnsupportedConfig(f"interpolation={interpolation!r}")
        extra = {"interpolation": interpolation} if cls is L.UpSampling2D else {}
        return [cls(config.get("size", 2), **extra, data_format=_image_format(config, layout),
                    name=config["name"])], layout
    return build


def _build_group_norm(config, layout, shape, keras2=False):
    return [L.GroupNormalization(config.get("groups", 32), _channel_axis(config.get("axis", -1), layout, shape),
                                 config.get("epsilon", 1e-3), config.get("center", True), config.get("scale", True),
                                 name=config["name"])], layout


def _build_unit_norm(config, layout, shape, keras2=False):
    axis = config.get("axis", -1)
    axes = [_channel_axis(a, layout, shape) for a in ([axis] if isinstance(axis, int) else axis)]
    return [L.UnitNormalization(axes, name=config["name"])], layout


def _build_noise(cls, argument):
    def build(config, layout, shape, keras2=False):
        return [cls(config[argument], name=config["name"])], layout
    return build


def _build_spatial_dropout(cls):
    def build(config, layout, shape, keras2=False):
        return [cls(config["rate"], data_format=_image_format(config, layout), name=config["name"])], layout
    return build


def _build_layer_scale(config, layout, shape, keras2=False):
    return [L.LayerScale(config["init_values"], config["projection_dim"], name=config["name"])], layout


def _layer_scale_weights(arrays, config, layout, shape):
    return {"gamma": arrays[0]}


def _build_resizing(config, layout, shape, keras2=False):
    interpolation = config.get("interpolation", "bilinear")
    if interpolation not in TORCH_MODES or config.get("pad_to_aspect_ratio"):
        raise UnsupportedConfig(f"Resizing with interpolation={interpolation!r}, "
                                f"pad_to_aspect_ratio={config.get('pad_to_aspect_ratio')!r}")
    return [L.Resizing(config["height"], config["width"], interpolation, config.get("crop_to_aspect_ratio", False),
                       config.get("antialias", False), data_format=_image_format(config, layout),
                       name=config["name"])], layout


def _build_center_crop(config, layout, shape, keras2=False):
    return [L.CenterCrop(config["height"], config["width"], data_format=_image_format(config, layout),
                         name=config["name"])], layout


def _build_augmentation(cls, *arguments):
    def build(config, layout, shape, keras2=False):
        options = {name: config[name] for name in arguments if name in config}
        return [cls(**options, data_format=_image_format(config, layout), name=config["name"])], layout
    return build


def _augmentation_weights(arrays, config, layout, shape):
    """A seeded layer's count of draws, which starts its stream: Keras saves no SeedGenerator state."""
    return {"draws": np.zeros((), dtype=np.int64)}


def _augmentation(cls, *arguments):
    return KerasLayer(_build_augmentation(cls, *arguments, "seed"), _augmentation_weights, _IMAGE,
                      weights_in_config=True)


def _serialized_array(value):
    """A number or list, or a numpy array or tensor as Keras serializes it:
    {"class_name": "__numpy__" or "__tensor__", "config": {"value": [...], "dtype": ...}}."""
    if isinstance(value, dict) and value.get("class_name") in ("__numpy__", "__tensor__"):
        value = value.get("config", {}).get("value")
    flat = value if isinstance(value, list) else [value]
    if not flat or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
        raise UnsupportedConfig(f"a value {value!r} that is not a number or a list of numbers")
    return value


def _build_rescaling(config, layout, shape, keras2=False):
    return [L.Rescaling(_serialized_array(config["scale"]), _serialized_array(config.get("offset", 0.0)),
                        data_format="channels_first" if layout == CHANNELS_FIRST else "channels_last",
                        name=config["name"])], layout


def _normalization_axes(config, layout, shape):
    axis = config.get("axis", -1)
    axes = [] if axis is None else [axis] if isinstance(axis, int) else list(axis)
    return [_channel_axis(a, layout, shape) for a in axes], [a % (len(shape) + 1) for a in axes]


def _build_normalization(config, layout, shape, keras2=False):
    ember_axes, _ = _normalization_axes(config, layout, shape)
    return [L.Normalization(ember_axes, invert=config.get("invert", False), name=config["name"])], layout


def _normalization_weights(arrays, config, layout, shape):
    """Keras keeps a given mean and variance in the config and adapted ones in the file
    (mean, variance, count); either way they go to the layer's buffers, in ember's axis order."""
    ember_axes, keras_axes = _normalization_axes(config, layout, shape)
    keras_shape = shape[1:] + shape[:1] if layout == CHANNELS_FIRST else shape
    kept_shape = tuple(keras_shape[a - 1] for a in sorted(keras_axes))
    if config.get("mean") is not None:
        count = int(np.prod(kept_shape, dtype=object))
        if count > MAX_CONFIG_STATISTICS:  # a few bytes of config must not allocate gigabytes at load time
            raise ValueError(f"the config's mean and variance broadcast to {count} values, more than "
                             f"{MAX_CONFIG_STATISTICS}")
        arrays = [broadcast_statistic(config[key], kept_shape).numpy() for key in ("mean", "variance")]
    # kept axes in Keras' sorted order -> in ember's sorted order
    order = np.argsort([ember_axes[keras_axes.index(a)] for a in sorted(keras_axes)])
    return {"mean": np.transpose(arrays[0], order), "variance": np.transpose(arrays[1], order)}


def _build_merge(cls):
    def build(config, layout, shape, keras2=False):
        return [cls(name=config["name"])], layout
    return build


def _build_scaled_add(config, layout, shape, keras2=False):
    return [L.ScaledAdd(config["scale"], name=config["name"])], layout


def _build_concatenate(config, layout, shape, keras2=False):
    return [L.Concatenate(axis=_channel_axis(config.get("axis", -1), layout, shape), name=config["name"])], layout


def _build_reshape(config, layout, shape, keras2=False):
    return [L.Reshape(config["target_shape"], name=config["name"])], KERAS


def _build_permute(config, layout, shape, keras2=False):
    return [L.Permute(config["dims"], name=config["name"])], KERAS


def _build_repeat_vector(config, layout, shape, keras2=False):
    return [L.RepeatVector(config["n"], name=config["name"])], KERAS


def _build_identity(config, layout, shape, keras2=False):
    return [L.Identity(name=config["name"])], layout


def _build_dot(config, layout, shape, keras2=False):
    return [L.Dot(config["axes"], config.get("normalize", False), name=config["name"])], KERAS


def _build_einsum_dense(config, layout, shape, keras2=False):
    if config.get("lora_rank"):
        raise UnsupportedConfig("lora_rank (a LoRA-adapted EinsumDense)")
    return [L.EinsumDense(config["equation"], config["output_shape"], activation_name(config.get("activation"), keras2),
                          config.get("bias_axes"), name=config["name"])], KERAS


def _einsum_dense_weights(arrays, config, layout, shape):
    return _with_bias({"kernel": arrays[0]}, arrays, 1)  # Keras' layout is the layer's


def _embedding_weights(arrays, config, layout, shape):
    return {"weight": arrays[0]}


_IMAGE = (KERAS, CHANNELS_FIRST)
_ANY = (KERAS, CHANNELS_FIRST, "flat")
_RESAMPLING = ("fill_mode", "interpolation", "fill_value")

KERAS_LAYERS = {
    "Dense": KerasLayer(_build_dense, _dense_weights, (KERAS, "flat")),
    "EinsumDense": KerasLayer(_build_einsum_dense, _einsum_dense_weights),
    "Conv1D": KerasLayer(_build_conv(L.Conv1D, ("filters", "groups")), _conv_weights, _IMAGE),
    "Conv2D": KerasLayer(_build_conv(L.Conv2D, ("filters", "groups")), _conv_weights, _IMAGE),
    "Conv3D": KerasLayer(_build_conv(L.Conv3D, ("filters", "groups")), _conv_weights, _IMAGE),
    "Conv1DTranspose": KerasLayer(_build_conv(L.Conv1DTranspose, ("filters", "output_padding")), _conv_weights,
                                  _IMAGE),
    "Conv2DTranspose": KerasLayer(_build_conv(L.Conv2DTranspose, ("filters", "output_padding")), _conv_weights,
                                  _IMAGE),
    "Conv3DTranspose": KerasLayer(_build_conv(L.Conv3DTranspose, ("filters", "output_padding")), _conv_weights,
                                  _IMAGE),
    "DepthwiseConv2D": KerasLayer(_build_conv(L.DepthwiseConv2D, ("depth_multiplier",)), _depthwise_weights,
                                  _IMAGE),
    "SeparableConv2D": KerasLayer(_build_conv(L.SeparableConv2D, ("filters", "depth_multiplier")),
                                  _separable_weights, _IMAGE),
    "MaxPooling1D": KerasLayer(_build_pool(L.MaxPooling1D), accepts=_IMAGE),
    "MaxPooling2D": KerasLayer(_build_pool(L.MaxPooling2D), accepts=_IMAGE),
    "MaxPooling3D": KerasLayer(_build_pool(L.MaxPooling3D), accepts=_IMAGE),
    "AveragePooling1D": KerasLayer(_build_pool(L.AveragePooling1D), accepts=_IMAGE),
    "AveragePooling2D": KerasLayer(_build_pool(L.AveragePooling2D), accepts=_IMAGE),
    "AveragePooling3D": KerasLayer(_build_pool(L.AveragePooling3D), accepts=_IMAGE),
    "GlobalAveragePooling1D": KerasLayer(_build_global_pool(L.GlobalAveragePooling1D), accepts=_IMAGE),
    "GlobalAveragePooling2D": KerasLayer(_build_global_pool(L.GlobalAveragePooling2D), accepts=_IMAGE),
    "GlobalAveragePooling3D": KerasLayer(_build_global_pool(L.GlobalAveragePooling3D), accepts=_IMAGE),
    "GlobalMaxPooling1D": KerasLayer(_build_global_pool(L.GlobalMaxPooling1D), accepts=_IMAGE),
    "GlobalMaxPooling2D": KerasLayer(_build_global_pool(L.GlobalMaxPooling2D), accepts=_IMAGE),
    "GlobalMaxPooling3D": KerasLayer(_build_global_pool(L.GlobalMaxPooling3D), accepts=_IMAGE),
    "Flatten": KerasLayer(_build_flatten, accepts=_IMAGE),
    "Reshape": KerasLayer(_build_reshape),
    "Permute": KerasLayer(_build_permute),
    "RepeatVector": KerasLayer(_build_repeat_vector),
    "Identity": KerasLayer(_build_identity, accepts=_ANY),
    "Dot": KerasLayer(_build_dot),
    "Dropout": KerasLayer(_build_dropout, accepts=_ANY),
    "ZeroPadding1D": KerasLayer(_build_edges(L.ZeroPadding1D, "padding"), accepts=_IMAGE),
    "ZeroPadding2D": KerasLayer(_build_edges(L.ZeroPadding2D, "padding"), accepts=_IMAGE),
    "ZeroPadding3D": KerasLayer(_build_edges(L.ZeroPadding3D, "padding"), accepts=_IMAGE),
    "Cropping1D": KerasLayer(_build_edges(L.Cropping1D, "cropping"), accepts=_IMAGE),
    "Cropping2D": KerasLayer(_build_edges(L.Cropping2D, "cropping"), accepts=_IMAGE),
    "Cropping3D": KerasLayer(_build_edges(L.Cropping3D, "cropping"), accepts=_IMAGE),
    "UpSampling1D": KerasLayer(_build_upsampling(L.UpSampling1D), accepts=_IMAGE),
    "UpSampling2D": KerasLayer(_build_upsampling(L.UpSampling2D), accepts=_IMAGE),
    "UpSampling3D": KerasLayer(_build_upsampling(L.UpSampling3D), accepts=_IMAGE),
    "Resizing": KerasLayer(_build_resizing, accepts=_IMAGE),
    "CenterCrop": KerasLayer(_build_center_crop, accepts=_IMAGE),
    "Rescaling": KerasLayer(_build_rescaling, accepts=_IMAGE),
    "RandomFlip": _augmentation(L.RandomFlip, "mode"),
    "RandomRotation": _augmentation(L.RandomRotation, "factor", *_RESAMPLING),
    "RandomZoom": _augmentation(L.RandomZoom, "height_factor", "width_factor", *_RESAMPLING),
    "RandomTranslation": _augmentation(L.RandomTranslation, "height_factor", "width_factor", *_RESAMPLING),
    "RandomCrop": _augmentation(L.RandomCrop, "height", "width"),
    "RandomContrast": _augmentation(L.RandomContrast, "factor", "value_range"),
    "RandomBrightness": _augmentation(L.RandomBrightness, "factor", "value_range"),
    "Normalization": KerasLayer(_build_normalization, _normalization_weights, _IMAGE, weights_in_config=True),
    "BatchNormalization": KerasLayer(_build_batch_norm, _batch_norm_weights, _ANY),
    "LayerNormalization": KerasLayer(_build_layer_norm, _layer_norm_weights),
    "GroupNormalization": KerasLayer(_build_group_norm, _layer_norm_weights, _IMAGE),
    "RMSNormalization": KerasLayer(_build_rms_norm, _rms_norm_weights),
    "UnitNormalization": KerasLayer(_build_unit_norm, accepts=_IMAGE),
    "LayerScale": KerasLayer(_build_layer_scale, _layer_scale_weights),
    "SpatialDropout1D": KerasLayer(_build_spatial_dropout(L.SpatialDropout1D), accepts=_IMAGE),
    "SpatialDropout2D": KerasLayer(_build_spatial_dropout(L.SpatialDropout2D), accepts=_IMAGE),
    "SpatialDropout3D": KerasLayer(_build_spatial_dropout(L.SpatialDropout3D), accepts=_IMAGE),
    "GaussianNoise": KerasLayer(_build_noise(L.GaussianNoise, "stddev"), accepts=_ANY),
    "GaussianDropout": KerasLayer(_build_noise(L.GaussianDropout, "rate"), accepts=_ANY),
    "AlphaDropout": KerasLayer(_build_noise(L.AlphaDropout, "rate"), accepts=_ANY),
    "Embedding": KerasLayer(_build_embedding, _embedding_weights),
    "Activation": KerasLayer(_build_activation, accepts=_ANY),
    "ReLU": KerasLayer(_build_relu, accepts=_ANY),
    "LeakyReLU": KerasLayer(_build_leaky_relu, accepts=_ANY),
    "ELU": KerasLayer(_build_elu, accepts=_ANY),
    "PReLU": KerasLayer(_build_prelu, _prelu_weights, _IMAGE),
    "Softmax": KerasLayer(_build_softmax, accepts=_IMAGE),
    "Add": KerasLayer(_build_merge(L.Add), accepts=_IMAGE),
    "Subtract": KerasLayer(_build_merge(L.Subtract), accepts=_IMAGE),
    "Multiply": KerasLayer(_build_merge(L.Multiply), accepts=_IMAGE),
    "Average": KerasLayer(_build_merge(L.Average), accepts=_IMAGE),
    "Maximum": KerasLayer(_build_merge(L.Maximum), accepts=_IMAGE),
    "Minimum": KerasLayer(_build_merge(L.Minimum), accepts=_IMAGE),
    "Concatenate": KerasLayer(_build_concatenate, accepts=_IMAGE),
    "CustomScaleLayer": KerasLayer(_build_scaled_add, accepts=_IMAGE),  # InceptionResNetV2's
    "Masking": KerasLayer(_build_masking, accepts=_ANY),
}
# tf.keras 2 spellings
for _alias, _name in {**{f"Convolution{n}D": f"Conv{n}D" for n in (1, 2, 3)},
                      **{f"Convolution{n}DTranspose": f"Conv{n}DTranspose" for n in (1, 2, 3)},
                      **{f"MaxPool{n}D": f"MaxPooling{n}D" for n in (1, 2, 3)},
                      **{f"AvgPool{n}D": f"AveragePooling{n}D" for n in (1, 2, 3)},
                      **{f"GlobalAvgPool{n}D": f"GlobalAveragePooling{n}D" for n in (1, 2, 3)},
                      **{f"GlobalMaxPool{n}D": f"GlobalMaxPooling{n}D" for n in (1, 2, 3)},
                      "SeparableConvolution2D": "SeparableConv2D"}.items():
    KERAS_LAYERS[_alias] = KERAS_LAYERS[_name]

# Attention, recurrent layers and wrappers build on this module's helpers, so they register last.
from ember.keras.attention import ATTENTION_LAYERS  # noqa: E402
from ember.keras.recurrent import RECURRENT_LAYERS  # noqa: E402

KERAS_LAYERS.update(ATTENTION_LAYERS)
KERAS_LAYERS.update(RECURRENT_LAYERS)


def convert_weights(class_name, arrays, module, config, layout, shape):
    """(arrays by parameter name in torch's layout, None), or (None, the reason they do not fit):
    a file's arrays for one layer, converted and checked against `module`'s state (its shapes
    only: the module may still be on the meta device). (None, None) for a layer without weights."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    spec = KERAS_LAYERS[class_name]
    if not expected:
        return None, (f"the file has {len(arrays)} arrays for a layer without weights" if arrays else None)
    if not arrays and not spec.weights_in_config:
        return None, f"no weights in the file for a layer with {expected}"
    try:
        converted = spec.weights(arrays, config, layout, shape)
    except (IndexError, ValueError, TypeError) as error:
        return None, f"file arrays {[tuple(a.shape) for a in arrays]} do not fit ({error})"
    got = {k: tuple(np.shape(v)) for k, v in converted.items()}
    if got != expected:
        return None, f"file arrays {[tuple(a.shape) for a in arrays]} give {got}, the layer expects {expected}"
    return converted, None


def copy_weights(module, converted, device=None):
    """Copy converted arrays into `module`'s state, first allocating on `device` the
    parameters from_keras built on the meta device."""
    if any(tensor.is_meta for tensor in module.state_dict().values()):
        module.to_empty(device=device)
    with torch.no_grad():
        state = module.state_dict()
        for key, value in converted.items():
            state[key].copy_(torch.from_numpy(np.asarray(value, order="C")))  # keeps 0-d arrays 0-d
