"""Old layers' arguments, one translation at a time (`legacy.layers_map`).

Each row states, from the old releases' documented arguments and defaults,
what a layer config meant: the Keras 3 class and arguments that compute the
same, or the argument that cannot be rebuilt. The real releases' files
(`tests/test_legacy_layer_families.py`) check the same translations end to
end, but they record every argument: the defaults and the rarer spellings
are stated here.
"""

import keras
import numpy as np
import pytest

from keras_bn import BatchNormalization
from keras_bn.legacy import layers_map
from keras_bn.legacy.activations import legacy_hard_sigmoid
from keras_bn.legacy.architecture import Node


def _plan(class_name, config, generation=2, target="keras_bn", dim_ordering=None):
    node = Node("x", class_name, dict(config, name="x"), [])
    return layers_map.translate(node, generation, target, dim_ordering)


def _translated(class_name, config, generation=2, **kwargs):
    plan = _plan(class_name, config, generation, **kwargs)
    assert plan.problems == [], plan.problems
    return plan


# (old class, generation, config, Keras 3 class, arguments it gets)
TRANSLATIONS = [
    # -- core --
    ("Dense", 1, {"output_dim": 4}, "Dense",
     {"units": 4, "activation": "linear", "use_bias": True}),
    ("Dense", 1, {"output_dim": 4, "bias": False, "activation": "relu"}, "Dense",
     {"units": 4, "activation": "relu", "use_bias": False}),
    ("Dense", 2, {"units": 5, "use_bias": False}, "Dense",
     {"units": 5, "use_bias": False}),
    ("TimeDistributedDense", 1, {"output_dim": 3}, "Dense", {"units": 3}),
    ("Activation", 1, {"activation": "tanh"}, "Activation", {"activation": "tanh"}),
    ("Flatten", 1, {}, "Flatten", {"data_format": "channels_last"}),
    ("Flatten", 2, {"data_format": "channels_first"}, "Flatten",
     {"data_format": "channels_first"}),
    ("Reshape", 0, {"dims": [2, 3]}, "Reshape", {"target_shape": (2, 3)}),
    ("Reshape", 2, {"target_shape": [6]}, "Reshape", {"target_shape": (6,)}),
    ("Permute", 1, {"dims": [2, 1]}, "Permute", {"dims": (2, 1)}),
    ("RepeatVector", 1, {"n": 3}, "RepeatVector", {"n": 3}),
    ("Masking", 1, {}, "Masking", {"mask_value": 0.0}),
    ("Masking", 2, {"mask_value": -1.0}, "Masking", {"mask_value": -1.0}),
    ("Embedding", 1, {"input_dim": 10, "output_dim": 3}, "Embedding",
     {"input_dim": 10, "output_dim": 3, "mask_zero": False}),
    ("Embedding", 2, {"input_dim": 10, "output_dim": 3, "mask_zero": True},
     "Embedding", {"mask_zero": True}),
    # -- inference no-ops: Keras 1's p and sigma, Keras 2's rate and stddev --
    ("Dropout", 1, {"p": 0.25}, "Dropout", {"rate": 0.25}),
    ("Dropout", 2, {"rate": 0.4}, "Dropout", {"rate": 0.4}),
    ("SpatialDropout2D", 1, {"p": 0.5, "dim_ordering": "th"}, "SpatialDropout2D",
     {"rate": 0.5}),
    ("GaussianDropout", 1, {"p": 0.1}, "GaussianDropout", {"rate": 0.1}),
    ("AlphaDropout", 2, {"rate": 0.2}, "AlphaDropout", {"rate": 0.2}),
    ("GaussianNoise", 1, {"sigma": 0.3}, "GaussianNoise", {"stddev": 0.3}),
    ("GaussianNoise", 2, {"stddev": 0.2}, "GaussianNoise", {"stddev": 0.2}),
    ("ActivityRegularization", 1, {"l1": 0.1}, "ActivityRegularization",
     {"l1": 0.1, "l2": 0.0}),
    # -- advanced activations --
    ("LeakyReLU", 1, {"alpha": 0.1}, "LeakyReLU", {"negative_slope": 0.1}),
    ("LeakyReLU", 2, {}, "LeakyReLU", {"negative_slope": 0.3}),
    ("ELU", 1, {}, "ELU", {"alpha": 1.0}),
    ("ELU", 2, {"alpha": 0.5}, "ELU", {"alpha": 0.5}),
    ("ThresholdedReLU", 1, {"theta": 0.5}, "ReLU", {"threshold": 0.5}),
    ("ReLU", 2, {}, "ReLU",
     {"max_value": None, "negative_slope": 0.0, "threshold": 0.0}),
    ("ReLU", 2, {"max_value": 6.0, "negative_slope": 0.1, "threshold": 1.0}, "ReLU",
     {"max_value": 6.0, "negative_slope": 0.1, "threshold": 1.0}),
    ("Softmax", 2, {}, "Softmax", {"axis": -1}),
    ("Softmax", 2, {"axis": 1}, "Softmax", {"axis": 1}),
    ("PReLU", 2, {"shared_axes": [1, 2]}, "PReLU", {"shared_axes": [1, 2]}),
    # -- convolutions: Keras 0.x/1.x names --
    ("Convolution1D", 1, {"nb_filter": 4, "filter_length": 3}, "Conv1D",
     {"filters": 4, "kernel_size": (3,), "strides": (1,), "padding": "valid",
      "data_format": "channels_last", "activation": "linear", "use_bias": True}),
    ("Convolution1D", 1, {"nb_filter": 4, "filter_length": 5,
                          "subsample_length": 2, "border_mode": "same"}, "Conv1D",
     {"kernel_size": (5,), "strides": (2,), "padding": "same"}),
    ("AtrousConvolution1D", 1, {"nb_filter": 2, "filter_length": 3,
                                "atrous_rate": 2}, "Conv1D",
     {"dilation_rate": (2,)}),
    ("Convolution2D", 1, {"nb_filter": 6, "nb_row": 2, "nb_col": 5,
                          "subsample": [1, 3], "dim_ordering": "tf"}, "Conv2D",
     {"filters": 6, "kernel_size": (2, 5), "strides": (1, 3),
      "data_format": "channels_last"}),
    ("AtrousConvolution2D", 1, {"nb_filter": 2, "nb_row": 3, "nb_col": 3,
                                "atrous_rate": [2, 1], "dim_ordering": "tf"},
     "Conv2D", {"dilation_rate": (2, 1)}),
    ("Convolution3D", 1, {"nb_filter": 2, "kernel_dim1": 1, "kernel_dim2": 2,
                          "kernel_dim3": 3, "dim_ordering": "tf"}, "Conv3D",
     {"kernel_size": (1, 2, 3), "strides": (1, 1, 1)}),
    ("SeparableConvolution2D", 1, {"nb_filter": 4, "nb_row": 3, "nb_col": 3,
                                   "dim_ordering": "tf"}, "SeparableConv2D",
     {"filters": 4, "depth_multiplier": 1}),
    ("Deconvolution2D", 1, {"nb_filter": 3, "nb_row": 3, "nb_col": 1,
                            "output_shape": [None, 7, 5, 3],
                            "dim_ordering": "tf"}, "Conv2DTranspose",
     {"filters": 3, "kernel_size": (3, 1)}),
    # -- convolutions: Keras 2 names --
    ("Conv2D", 2, {"filters": 3, "kernel_size": 3}, "Conv2D",
     {"filters": 3, "kernel_size": (3, 3), "strides": (1, 1), "padding": "valid",
      "data_format": "channels_last", "use_bias": True}),
    ("Conv2D", 2, {"filters": 3, "kernel_size": [1, 3], "strides": 2,
                   "dilation_rate": 1, "padding": "same",
                   "data_format": "channels_first"}, "Conv2D",
     {"kernel_size": (1, 3), "strides": (2, 2), "padding": "same",
      "data_format": "channels_first"}),
    ("Conv1D", 2, {"filters": 2, "kernel_size": [4], "dilation_rate": [3]},
     "Conv1D", {"kernel_size": (4,), "dilation_rate": (3,)}),
    ("SeparableConv1D", 2, {"filters": 2, "kernel_size": 3,
                            "depth_multiplier": 2}, "SeparableConv1D",
     {"depth_multiplier": 2}),
    ("DepthwiseConv2D", 2, {"kernel_size": 3, "depth_multiplier": 3},
     "DepthwiseConv2D", {"depth_multiplier": 3, "kernel_size": (3, 3)}),
    ("Conv2DTranspose", 2, {"filters": 2, "kernel_size": 3, "strides": 2,
                            "output_padding": [1, 1]}, "Conv2DTranspose",
     {"output_padding": [1, 1], "strides": (2, 2)}),
    ("Conv3DTranspose", 2, {"filters": 2, "kernel_size": 2}, "Conv3DTranspose",
     {"kernel_size": (2, 2, 2)}),
    # -- pooling: Keras 1's pool_length/stride, strides default to the size --
    ("MaxPooling1D", 1, {}, "MaxPooling1D",
     {"pool_size": (2,), "strides": (2,), "padding": "valid",
      "data_format": "channels_last"}),
    ("MaxPooling1D", 1, {"pool_length": 3, "stride": 1}, "MaxPooling1D",
     {"pool_size": (3,), "strides": (1,)}),
    ("AveragePooling2D", 1, {"pool_size": [3, 2], "dim_ordering": "th"},
     "AveragePooling2D",
     {"pool_size": (3, 2), "strides": (3, 2), "data_format": "channels_first"}),
    ("MaxPooling2D", 2, {"pool_size": 2, "strides": 1, "padding": "same"},
     "MaxPooling2D", {"pool_size": (2, 2), "strides": (1, 1), "padding": "same"}),
    ("AveragePooling3D", 2, {"pool_size": [1, 2, 2]}, "AveragePooling3D",
     {"pool_size": (1, 2, 2), "strides": (1, 2, 2)}),
    ("GlobalAveragePooling2D", 2, {"data_format": "channels_first"},
     "GlobalAveragePooling2D", {"data_format": "channels_first"}),
    ("GlobalMaxPooling1D", 1, {}, "GlobalMaxPooling1D",
     {"data_format": "channels_last"}),
    # -- padding and cropping: an int, one per axis, pairs, Keras 1.2's 4 --
    ("ZeroPadding1D", 1, {}, "ZeroPadding1D", {"padding": (1, 1)}),
    ("ZeroPadding1D", 2, {"padding": [2, 3]}, "ZeroPadding1D",
     {"padding": (2, 3)}),
    ("ZeroPadding2D", 2, {"padding": 2}, "ZeroPadding2D",
     {"padding": ((2, 2), (2, 2)), "data_format": "channels_last"}),
    ("ZeroPadding2D", 2, {"padding": [1, 2]}, "ZeroPadding2D",
     {"padding": ((1, 1), (2, 2))}),
    ("ZeroPadding2D", 1, {"padding": [1, 2, 3, 4], "dim_ordering": "tf"},
     "ZeroPadding2D", {"padding": ((1, 2), (3, 4))}),
    ("ZeroPadding2D", 1, {"padding": {"top_pad": 1, "bottom_pad": 2,
                                      "left_pad": 3, "right_pad": 4},
                          "dim_ordering": "tf"},
     "ZeroPadding2D", {"padding": ((1, 2), (3, 4))}),
    ("ZeroPadding2D", 1, {"padding": {"top_pad": 1}, "dim_ordering": "th"},
     "ZeroPadding2D",
     {"padding": ((1, 0), (0, 0)), "data_format": "channels_first"}),
    ("ZeroPadding3D", 2, {"padding": [[1, 0], [0, 2], [3, 3]]}, "ZeroPadding3D",
     {"padding": ((1, 0), (0, 2), (3, 3))}),
    ("Cropping1D", 1, {"cropping": [1, 2]}, "Cropping1D", {"cropping": (1, 2)}),
    ("Cropping2D", 2, {"cropping": [[0, 1], [2, 3]]}, "Cropping2D",
     {"cropping": ((0, 1), (2, 3))}),
    # -- upsampling: Keras 1's length --
    ("UpSampling1D", 1, {"length": 3}, "UpSampling1D", {"size": 3}),
    ("UpSampling1D", 2, {}, "UpSampling1D", {"size": 2}),
    ("UpSampling2D", 2, {}, "UpSampling2D",
     {"size": (2, 2), "data_format": "channels_last", "interpolation": "nearest"}),
    ("UpSampling2D", 2, {"size": [1, 3], "interpolation": "bilinear"},
     "UpSampling2D", {"size": (1, 3), "interpolation": "bilinear"}),
    ("UpSampling3D", 2, {"size": 2}, "UpSampling3D", {"size": (2, 2, 2)}),
    # -- merges: Keras 1's Merge modes, Keras 2's classes --
    ("Merge", 1, {"mode": "concat", "concat_axis": 1}, "Concatenate", {"axis": 1}),
    ("Merge", 1, {"mode": "concat"}, "Concatenate", {"axis": -1}),
    ("Merge", 1, {"mode": "sum", "concat_axis": -1}, "Add", {}),
    ("Merge", 1, {"mode": "mul"}, "Multiply", {}),
    ("Merge", 1, {"mode": "ave"}, "Average", {}),
    ("Merge", 1, {"mode": "max"}, "Maximum", {}),
    ("Concatenate", 2, {"axis": 2}, "Concatenate", {"axis": 2}),
    ("Add", 2, {}, "Add", {}),
    ("Multiply", 2, {}, "Multiply", {}),
    ("Average", 2, {}, "Average", {}),
    ("Maximum", 2, {}, "Maximum", {}),
    # -- recurrent layers --
    ("SimpleRNN", 1, {"output_dim": 3}, "SimpleRNN",
     {"units": 3, "activation": "tanh", "use_bias": True,
      "return_sequences": False, "go_backwards": False}),
    ("LSTM", 2, {"units": 3, "recurrent_activation": "sigmoid",
                 "return_sequences": True, "go_backwards": True}, "LSTM",
     {"units": 3, "recurrent_activation": "sigmoid", "return_sequences": True,
      "go_backwards": True}),
    ("GRU", 1, {"output_dim": 2, "inner_activation": "sigmoid",
                "activation": "relu"}, "GRU",
     {"units": 2, "recurrent_activation": "sigmoid", "activation": "relu",
      "reset_after": False}),
    ("GRU", 2, {"units": 2, "reset_after": True}, "GRU", {"reset_after": True}),
    ("CuDNNLSTM", 2, {"units": 4}, "LSTM",
     {"units": 4, "activation": "tanh", "recurrent_activation": "sigmoid",
      "return_sequences": False, "go_backwards": False}),
    ("CuDNNGRU", 2, {"units": 4, "return_sequences": True}, "GRU",
     {"reset_after": True, "recurrent_activation": "sigmoid",
      "return_sequences": True}),
    ("ConvLSTM2D", 2, {"filters": 2, "kernel_size": 3}, "ConvLSTM2D",
     {"filters": 2, "kernel_size": (3, 3), "strides": (1, 1), "padding": "valid",
      "data_format": "channels_last", "activation": "tanh",
      "return_sequences": False, "go_backwards": False, "use_bias": True}),
    ("ConvLSTM2D", 1, {"nb_filter": 2, "nb_row": 3, "nb_col": 1,
                       "subsample": [2, 1], "dim_ordering": "tf",
                       "inner_activation": "sigmoid"}, "ConvLSTM2D",
     {"kernel_size": (3, 1), "strides": (2, 1), "recurrent_activation": "sigmoid"}),
    ("ConvLSTM2D", 2, {"filters": 2, "kernel_size": 3, "dilation_rate": 2},
     "ConvLSTM2D", {"dilation_rate": (2, 2)}),
]  # fmt: skip


@pytest.mark.parametrize(
    "class_name, generation, config, keras_class, expected",
    TRANSLATIONS,
    ids=[f"{row[0]}-{i}" for i, row in enumerate(TRANSLATIONS)],
)
def test_an_old_config_means_these_keras_3_arguments(
    class_name, generation, config, keras_class, expected
):
    plan = _translated(class_name, config, generation)
    assert plan.cls is getattr(keras.layers, keras_class)
    for key, value in expected.items():
        assert key in plan.kwargs, key
        assert plan.kwargs[key] == value, (key, plan.kwargs[key])


def test_the_translated_layers_build():
    """Each row's arguments are ones Keras 3 takes (its classes refuse
    unknown or mistyped ones)."""
    for class_name, generation, config, _, _ in TRANSLATIONS:
        if class_name in ("Merge", "Concatenate", "Add", "Multiply", "Average",
                          "Maximum"):  # fmt: skip
            continue
        layer = _translated(class_name, config, generation).build()
        assert isinstance(layer, keras.layers.Layer)


@pytest.mark.parametrize(
    "class_name, config, wanted",
    [
        # LSTM, GRU and ConvLSTM2D gates: hard_sigmoid was Keras 1 and 2's
        # default, and it meant clip(0.2 x + 0.5, 0, 1).
        ("LSTM", {"output_dim": 2}, "recurrent_activation"),
        ("GRU", {"units": 2}, "recurrent_activation"),
        (
            "ConvLSTM2D",
            {"filters": 2, "kernel_size": 3, "data_format": "channels_last"},
            "recurrent_activation",
        ),
        ("Dense", {"units": 2, "activation": "hard_sigmoid"}, "activation"),
    ],
)
def test_hard_sigmoid_is_the_old_one(class_name, config, wanted):
    activation = _translated(class_name, config, 1).kwargs[wanted]
    assert activation is legacy_hard_sigmoid
    x = np.array([-3.0, -1.0, 0.0, 1.0, 3.0], dtype="float32")
    got = keras.ops.convert_to_numpy(activation(x))
    np.testing.assert_allclose(got, np.clip(0.2 * x + 0.5, 0.0, 1.0), atol=1e-7)


@pytest.mark.parametrize(
    "class_name, generation, config, channels_first",
    [
        # What TensorFlow's CPU cannot run channels-first is wrapped between
        # Permutes; the rest runs channels-first anywhere.
        ("Convolution2D", 1, {"nb_filter": 2, "nb_row": 3, "nb_col": 3,
                              "dim_ordering": "th"}, True),
        ("Convolution2D", 0, {"nb_filter": 2, "nb_row": 3, "nb_col": 3}, True),
        ("Convolution2D", 1, {"nb_filter": 2, "nb_row": 3, "nb_col": 3,
                              "dim_ordering": "tf"}, False),
        ("MaxPooling2D", 1, {"dim_ordering": "th"}, True),
        ("Conv2D", 2, {"filters": 2, "kernel_size": 3,
                       "data_format": "channels_first"}, True),
        ("ConvLSTM2D", 2, {"filters": 2, "kernel_size": 3,
                           "data_format": "channels_first"}, True),
        ("UpSampling2D", 1, {"dim_ordering": "th"}, False),
        ("ZeroPadding2D", 1, {"dim_ordering": "th"}, False),
        ("Cropping2D", 2, {"data_format": "channels_first"}, False),
        ("GlobalAveragePooling2D", 1, {"dim_ordering": "th"}, False),
        ("SpatialDropout2D", 1, {"dim_ordering": "th"}, False),
        ("Flatten", 2, {"data_format": "channels_first"}, False),
    ],
)  # fmt: skip
def test_which_layers_run_between_permutes(
    class_name, generation, config, channels_first
):
    plan = _translated(class_name, config, generation)
    assert plan.channels_first is channels_first


def test_a_deconvolution_keeps_its_declared_output_shape():
    plan = _translated(
        "Deconvolution2D",
        {"nb_filter": 3, "nb_row": 3, "nb_col": 3, "output_shape": [None, 3, 9, 9],
         "dim_ordering": "th"},
        1,
    )  # fmt: skip
    assert plan.output_shape == (3, 9, 9)
    # A shape of another rank says nothing checkable: not kept.
    plan = _translated(
        "Deconvolution2D",
        {"nb_filter": 3, "nb_row": 3, "nb_col": 3, "output_shape": [9, 9],
         "dim_ordering": "th"},
        1,
    )  # fmt: skip
    assert plan.output_shape is None


def test_wrappers_translate_their_layer():
    plan = _translated(
        "TimeDistributed",
        {"layer": {"class_name": "Dense", "config": {"output_dim": 3}}},
        1,
    )
    assert plan.cls is keras.layers.TimeDistributed
    inner = plan.kwargs["layer"]
    assert inner.cls is keras.layers.Dense and inner.kwargs["units"] == 3
    plan = _translated(
        "Bidirectional",
        {"layer": {"class_name": "LSTM", "config": {"units": 2}},
         "merge_mode": "mul", "backward_layer": {"class_name": "LSTM"}},
        2,
    )  # fmt: skip
    assert plan.cls is keras.layers.Bidirectional
    assert plan.kwargs["merge_mode"] == "mul"
    assert plan.kwargs["layer"].cls is keras.layers.LSTM
    built = plan.build()
    assert isinstance(built.forward_layer, keras.layers.LSTM)


@pytest.mark.parametrize(
    "generation, config, expected",
    [
        # Keras 0.x: per-activation statistics (no axis), epsilon 1e-6,
        # momentum 0.9; Keras 1: axis -1, momentum 0.99; Keras 2: epsilon
        # 1e-3.
        (0, {}, dict(epsilon=1e-6, momentum=0.9, axis=None, mode=0)),
        (1, {}, dict(epsilon=1e-6, momentum=0.99, axis=-1, mode=0)),
        (2, {}, dict(epsilon=1e-3, momentum=0.99, axis=-1, mode=0,
                     center=True, scale=True)),
        (1, {"mode": 1, "epsilon": 0.01, "axis": 1}, dict(mode=1, epsilon=0.01,
                                                         axis=1)),
        (2, {"axis": [3], "center": False, "scale": False},
         dict(axis=3, center=False, scale=False)),
        (1, {"epsilon": 0}, dict(epsilon=0)),
    ],
)  # fmt: skip
def test_batch_normalization_arguments(generation, config, expected):
    plan = _translated("BatchNormalization", config, generation)
    assert plan.cls is BatchNormalization
    for key, value in expected.items():
        assert plan.kwargs[key] == value, key


@pytest.mark.parametrize("generation, in_root", [(0, False), (1, True)])
def test_samplewise_formula_follows_the_release(generation, in_root):
    plan = _translated("BatchNormalization", {"mode": 1}, generation)
    assert plan.kwargs["samplewise_epsilon_in_root"] is in_root
    assert (
        "samplewise_epsilon_in_root"
        not in _translated("BatchNormalization", {"mode": 0}, generation).kwargs
    )


def test_batch_normalization_into_the_stock_layer():
    plan = _translated("BatchNormalization", {}, 0, target="keras")
    assert plan.cls is keras.layers.BatchNormalization
    assert plan.per_activation_bn is True and plan.kwargs["axis"] == -1
    assert "mode" not in plan.kwargs
    plan = _translated("BatchNormalization", {"axis": 1}, 1, target="keras")
    assert plan.per_activation_bn is False and plan.kwargs["axis"] == 1


# (old class, generation, config, target, the fields refused)
REFUSALS = [
    ("Lambda", 1, {"function": "x"}, "keras_bn", ["class_name"]),
    ("Highway", 1, {}, "keras_bn", ["class_name"]),
    ("Dense", 1, {"output_dim": 2, "activation": "nonesuch"}, "keras_bn",
     ["activation"]),
    ("Dense", 2, {"units": 2, "activation": {"class_name": "ReLU"}}, "keras_bn",
     ["activation"]),
    ("Dense", 2, {"units": 2, "frobnicate": 3}, "keras_bn", ["frobnicate"]),
    ("Convolution2D", 1, {"nb_filter": 2, "nb_row": 3, "nb_col": 3,
                          "border_mode": "full", "dim_ordering": "th"},
     "keras_bn", ["border_mode"]),
    ("Conv2D", 2, {"filters": 2, "kernel_size": 3, "padding": "causal"},
     "keras_bn", ["border_mode"]),
    ("Convolution2D", 1, {"nb_filter": 2, "nb_row": 3, "nb_col": 3,
                          "dim_ordering": "xy"}, "keras_bn", ["dim_ordering"]),
    ("Conv2D", 2, {"filters": 2, "kernel_size": 3, "data_format": "NHWC"},
     "keras_bn", ["data_format"]),
    ("Conv2D", 2, {"filters": 4, "kernel_size": 3, "groups": 2}, "keras_bn",
     ["groups"]),
    ("Conv2DTranspose", 2, {"filters": 2, "kernel_size": 3, "dilation_rate": 2},
     "keras_bn", ["dilation_rate"]),
    ("SeparableConv2D", 2, {"filters": 2, "kernel_size": 3,
                            "dilation_rate": [1, 2]}, "keras_bn", ["dilation_rate"]),
    ("MaxPooling2D", 0, {"ignore_border": False}, "keras_bn", ["ignore_border"]),
    ("ZeroPadding3D", 2, {"padding": [1, 2]}, "keras_bn", ["padding"]),
    ("Cropping2D", 2, {"cropping": [1, 2, 3]}, "keras_bn", ["cropping"]),
    ("UpSampling3D", 2, {"interpolation": "bilinear"}, "keras_bn",
     ["interpolation"]),
    ("UpSampling2D", 1, {}, "keras_bn", ["dim_ordering"]),
    ("BatchNormalization", 2, {"epsilon": -1.0}, "keras_bn", ["epsilon"]),
    ("BatchNormalization", 2, {"epsilon": True}, "keras_bn", ["epsilon"]),
    ("BatchNormalization", 2, {"epsilon": float("inf")}, "keras_bn", ["epsilon"]),
    ("BatchNormalization", 2, {"epsilon": "0.1"}, "keras_bn", ["epsilon"]),
    ("BatchNormalization", 2, {"axis": [1, 2]}, "keras_bn", ["axis"]),
    ("BatchNormalization", 1, {"mode": 3}, "keras_bn", ["mode"]),
    ("BatchNormalization", 1, {"mode": 1}, "keras", ["mode"]),
    ("BatchNormalization", 1, {"mode": 2}, "keras", ["mode"]),
    ("Merge", 1, {"mode": "cos"}, "keras_bn", ["mode"]),
    ("Merge", 1, {"mode": "sum", "mode_type": "lambda"}, "keras_bn", ["mode"]),
    ("Merge", 1, {"mode": "mul", "concat_axis": 1}, "keras_bn", ["concat_axis"]),
    ("Add", 2, {"axis": 1}, "keras_bn", ["concat_axis"]),
    ("LSTM", 2, {"units": 2, "stateful": True}, "keras_bn", ["stateful"]),
    ("GRU", 2, {"units": 2, "return_state": True}, "keras_bn", ["return_state"]),
    ("SimpleRNN", 2, {"units": 2, "time_major": True}, "keras_bn", ["time_major"]),
    ("CuDNNLSTM", 2, {"units": 2, "stateful": True}, "keras_bn", ["stateful"]),
    ("ConvLSTM2D", 2, {"filters": 2, "kernel_size": 3, "return_state": True},
     "keras_bn", ["return_state"]),
    ("Bidirectional", 2, {"layer": {"class_name": "LSTM", "config": {"units": 2}},
                          "merge_mode": None}, "keras_bn", ["merge_mode"]),
    ("Bidirectional", 2, {"layer": "LSTM"}, "keras_bn", ["layer"]),
    ("TimeDistributed", 2, {"layer": {"class_name": "Dense",
                                      "config": {"units": 2, "zap": 1}}},
     "keras_bn", ["layer.zap"]),
]  # fmt: skip


@pytest.mark.parametrize(
    "class_name, generation, config, target, fields",
    REFUSALS,
    ids=[f"{row[0]}-{i}" for i, row in enumerate(REFUSALS)],
)
def test_what_cannot_be_rebuilt_is_refused_by_name(
    class_name, generation, config, target, fields
):
    plan = _plan(class_name, config, generation, target)
    assert [field for field, _ in plan.problems] == fields
    for _, message in plan.problems:
        assert isinstance(message, str) and message


def test_training_only_and_empty_arguments_are_not_refused():
    plan = _translated(
        "Dense",
        {"units": 2, "kernel_initializer": {"class_name": "Ones"},
         "kernel_regularizer": {"l2": 0.1}, "trainable": False, "extra": None,
         "other": [], "flag": False},
        2,
    )  # fmt: skip
    assert plan.cls is keras.layers.Dense


def test_every_problem_of_a_layer_is_listed():
    plan = _plan(
        "Convolution2D",
        {"nb_filter": 2, "nb_row": 3, "nb_col": 3, "border_mode": "full",
         "dim_ordering": "xy", "activation": "nonesuch", "zap": 1},
        1,
    )  # fmt: skip
    assert sorted(field for field, _ in plan.problems) == [
        "activation", "border_mode", "dim_ordering", "zap",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "dim_ordering, data_format", [("th", "channels_first"), ("tf", "channels_last")]
)
def test_a_keras1_layer_without_ordering_takes_the_model_s(dim_ordering, data_format):
    plan = _translated("UpSampling2D", {}, 1, dim_ordering=dim_ordering)
    assert plan.kwargs["data_format"] == data_format
    # The layer's own ordering comes first.
    plan = _translated("UpSampling2D", {"dim_ordering": "th"}, 1, dim_ordering="tf")
    assert plan.kwargs["data_format"] == "channels_first"
