"""Stage `imagenet` (see dvc.yaml): `python stages/imagenet.py imagenet_pretrained`."""

from dl4cv.pipeline.cli import main

if __name__ == "__main__":
    main("imagenet", "dl4cv.pipeline.imagenet", "experiment")
