"""annotate: split each captcha into digits and label every digit crop.

`captcha.annotate.method: file` takes the labels from a CSV of known texts (by default the
generator's truth.csv) and needs nobody. `browser` serves the labelling page and returns when
every crop is labelled; stopped earlier (Ctrl-C), it keeps every label given so far and exits
with an error, so DVC does not take half-labelled data for finished work: run it again to go on.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

from dl4cv.captcha import settings
from dl4cv.captcha.download import TRUTH
from dl4cv.captcha.labels import LabelStore, labels_from_truth, segment_folder, write_labels
from dl4cv.config import CAPTCHA, Params
from dl4cv.data.formats import write_rejects
from dl4cv.data.sources import read_descriptor
from dl4cv.runtime.paths import label_rejects_file, labels_file, raw_dir

log = logging.getLogger(__name__)

INTERRUPTED = 130  # the shell's exit status for Ctrl-C


def run(params: Params) -> dict:
    """Write data/labels/captcha.csv (labelled crops) and captcha-rejects.csv (captchas that
    did not split into digits, captchas without a known text)."""
    spec = settings(params)
    raw = raw_dir(CAPTCHA)
    fetched = read_descriptor(raw)
    crops, rejects = segment_folder(raw, spec.segment, progress=sys.stderr.isatty())
    captchas = len({c.file for c in crops}) + len(rejects)
    path = labels_file(CAPTCHA)
    if spec.annotate.method == "file":
        truth = Path(spec.annotate.labels) if spec.annotate.labels else raw / TRUTH
        labelled, unknown = labels_from_truth(crops, truth, spec.segment.digits)
        write_labels(path, labelled)
        rejects += unknown
        count = len(labelled)
    else:
        store = LabelStore(path, crops)
        count = _annotate_in_browser(raw, store, params)
    write_rejects(label_rejects_file(CAPTCHA), rejects)
    summary = {
        "captchas": captchas,
        "segmented": captchas - len(rejects),
        "crops_labelled": count,
        "rejected": len(rejects),
        "dataset_sha256": fetched.sha256,
    }
    log.info(
        "%d captchas: %d split into %d digits, %d rejected (%s); %d crops labelled in %s",
        captchas,
        captchas - len(rejects),
        spec.segment.digits,
        len(rejects),
        label_rejects_file(CAPTCHA),
        count,
        path,
    )
    return summary


def _annotate_in_browser(raw: Path, store: LabelStore, params: Params) -> int:
    from dl4cv.captcha.server import AnnotationServer

    spec = settings(params)
    pending = len(store.pending())
    if pending:
        server = AnnotationServer(raw, store, spec.segment, spec.annotate.host, spec.annotate.port)
        log.info(
            "%d of %d crops to label: open %s (keys 0-9 label, Backspace undoes, Space skips); "
            "every label is saved at once, Ctrl-C stops",
            pending,
            len(store.crops),
            server.url,
        )
        with contextlib.suppress(KeyboardInterrupt):  # every label is saved already
            server.serve()
    left = len(store.pending())
    if left:
        log.error(
            "stopped with %d of %d crops labelled (saved in %s); run the stage again to continue",
            len(store.rows),
            len(store.crops),
            store.path,
        )
        sys.exit(INTERRUPTED)
    store.save()  # also when there was nothing to label
    return len(store.rows)
