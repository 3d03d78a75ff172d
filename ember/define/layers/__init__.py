"""Keras-style layers for `ember.Sequential` (and for any torch module)."""
from ember.define.layers.attention import AdditiveAttention, Attention, MultiHeadAttention
from ember.define.layers.augmentation import (RandomBrightness, RandomContrast, RandomCrop, RandomFlip, RandomRotation,
                                              RandomTranslation, RandomZoom)
from ember.define.layers.base import ImageLayer, Layer
from ember.define.layers.bidirectional import Bidirectional
from ember.define.layers.conv import Conv1D, Conv2D, Conv3D
from ember.define.layers.conv_lstm import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D
from ember.define.layers.depthwise import DepthwiseConv2D, SeparableConv2D
from ember.define.layers.einsum_dense import EinsumDense
from ember.define.layers.core import (ELU, Activation, Dense, Dropout, Embedding, Flatten, LayerScale, LeakyReLU,
                                      Masking, PReLU, ReLU, Reshape, Softmax)
from ember.define.layers.merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, ScaledAdd,
                                         Subtract, add, average, concatenate, maximum, minimum, multiply, subtract)
from ember.define.layers.noise import (AlphaDropout, GaussianDropout, GaussianNoise, SpatialDropout1D, SpatialDropout2D,
                                       SpatialDropout3D)
from ember.define.layers.normalization import (BatchNorm, BatchNormalization, GroupNormalization, LayerNorm,
                                               LayerNormalization, RMSNormalization, UnitNormalization)
from ember.define.layers.padding import (Cropping1D, Cropping2D, Cropping3D, ZeroPadding1D, ZeroPadding2D,
                                         ZeroPadding3D)
from ember.define.layers.pooling import (AveragePooling1D, AveragePooling2D, AveragePooling3D, AvgPool1D, AvgPool2D,
                                         AvgPool3D, AvgPooling2D, GlobalAveragePooling1D, GlobalAveragePooling2D,
                                         GlobalAveragePooling3D, GlobalAvgPool1D, GlobalAvgPool2D, GlobalAvgPool3D,
                                         GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPool3D, GlobalMaxPooling1D,
                                         GlobalMaxPooling2D, GlobalMaxPooling3D, MaxPool1D, MaxPool2D, MaxPool3D,
                                         MaxPooling1D, MaxPooling2D, MaxPooling3D)
from ember.define.layers.preprocessing import Normalization, Rescaling
from ember.define.layers.recurrent import GRU, LSTM, SimpleRNN
from ember.define.layers.reshaping import Identity, Permute, RepeatVector
from ember.define.layers.resizing import CenterCrop, Resizing
from ember.define.layers.time_distributed import TimeDistributed
from ember.define.layers.transposed import Conv1DTranspose, Conv2DTranspose, Conv3DTranspose
from ember.define.layers.upsampling import UpSampling1D, UpSampling2D, UpSampling3D
from ember.define.symbolic import Input

__all__ = sorted([name for name, value in globals().items() if isinstance(value, type) and not name.startswith("_")]
                 + ["Input", "add", "average", "concatenate", "maximum", "minimum", "multiply", "subtract"])
