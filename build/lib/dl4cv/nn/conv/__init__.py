"""The book's convolutional networks, as plain backend-agnostic Keras 3."""

from dl4cv.nn.conv.lenet import LeNet
from dl4cv.nn.conv.minivggnet import MiniVGGNet
from dl4cv.nn.conv.shallownet import ShallowNet

__all__ = ["LeNet", "MiniVGGNet", "ShallowNet"]
