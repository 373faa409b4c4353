"""Stage `demo_video` (see dvc.yaml): `python stages/demo_video.py`: the default input of
`detect`, test-split faces of detect.demo.dataset pasted into frames, with a truth CSV."""

from dl4cv.pipeline.cli import main

if __name__ == "__main__":
    main("demo_video", "dl4cv.pipeline.detect:build_demo")
