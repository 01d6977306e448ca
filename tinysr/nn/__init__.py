"""Neural-network building blocks: :class:`Module`, :class:`Parameter` and the layers the SR papers use."""
from . import init
from .layers import (BatchNorm2d, Conv2d, ConvTranspose2d, Flatten, LeakyReLU, Linear, MaxPool2d, PixelShuffle,
                     PReLU, ReLU, Sigmoid, Tanh)
from .module import Module, ModuleList, Parameter, Sequential

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "Conv2d", "ConvTranspose2d", "Linear",
           "PixelShuffle", "ReLU", "LeakyReLU", "PReLU", "Sigmoid", "Tanh", "Flatten", "BatchNorm2d", "MaxPool2d", "init"]
