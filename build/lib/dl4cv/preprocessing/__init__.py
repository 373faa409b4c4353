"""Image preprocessors with the book's names, each a small class with `preprocess(image)`."""

from dl4cv.preprocessing.aspect_aware import AspectAwarePreprocessor
from dl4cv.preprocessing.decode import DecodeError, ImageDecoder
from dl4cv.preprocessing.image_to_array import ImageToArrayPreprocessor
from dl4cv.preprocessing.simple import SimplePreprocessor

__all__ = [
    "AspectAwarePreprocessor",
    "DecodeError",
    "ImageDecoder",
    "ImageToArrayPreprocessor",
    "SimplePreprocessor",
]
