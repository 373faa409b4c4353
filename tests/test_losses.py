"""Ch 8: linear scoring and the book's worked hinge / cross-entropy tables, recomputed exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dl4cv.nn.linear import LinearClassifier
from dl4cv.nn.losses import (
    cross_entropy_loss,
    cross_entropy_losses,
    hinge_loss,
    hinge_losses,
    softmax,
)

DOG, CAT, PANDA = 0, 1, 2

# The book's hinge-loss table prints one column per image; here one row per image.
BOOK_HINGE_SCORES = np.array(
    [
        [4.26, 1.33, -1.01],  # image 1, a dog
        [3.76, -1.20, -3.81],  # image 2, a cat
        [-2.37, 1.03, -2.27],  # image 3, a panda
    ]
)
BOOK_HINGE_LABELS = np.array([DOG, CAT, PANDA])
BOOK_SOFTMAX_SCORES = np.array([-3.44, 1.16, 3.91])  # dog, cat, panda; true class panda


def test_hinge_reproduces_the_book_table() -> None:
    per_image = hinge_losses(BOOK_HINGE_SCORES, BOOK_HINGE_LABELS)
    np.testing.assert_allclose(per_image, [0.0, 5.96, 5.20], atol=1e-12)
    assert hinge_loss(BOOK_HINGE_SCORES, BOOK_HINGE_LABELS) == pytest.approx(3.72, abs=1e-12)


def test_hinge_sums_only_the_wrong_classes() -> None:
    # Image 3 by hand: max(0, -2.37 + 2.27 + 1) + max(0, 1.03 + 2.27 + 1) = 0.90 + 4.30.
    assert hinge_losses(BOOK_HINGE_SCORES[2:], [PANDA])[0] == pytest.approx(5.20)
    # delta = 0 drops the margin: only the cat score beats the panda's, by 3.30.
    assert hinge_losses(BOOK_HINGE_SCORES[2:], [PANDA], delta=0.0)[0] == pytest.approx(3.30)
    # A correct score ahead of every other by more than delta costs nothing.
    assert hinge_losses([[5.0, 3.9, -1.0]], [0])[0] == 0.0
    assert hinge_losses([[5.0, 4.5, -1.0]], [0])[0] == pytest.approx(0.5)


def test_softmax_reproduces_the_book_panda_probability() -> None:
    probs = softmax(BOOK_SOFTMAX_SCORES)
    assert round(100 * probs[PANDA], 2) == 93.93
    assert probs.sum() == pytest.approx(1.0)
    assert np.argmax(probs) == PANDA
    loss = cross_entropy_losses(BOOK_SOFTMAX_SCORES, [PANDA])[0]
    assert loss == pytest.approx(-math.log(probs[PANDA]))
    assert round(loss, 4) == 0.0626  # natural log: -ln(0.9393)


def test_softmax_is_shift_invariant_and_stable_on_large_scores() -> None:
    np.testing.assert_allclose(softmax(BOOK_SOFTMAX_SCORES + 1000.0), softmax(BOOK_SOFTMAX_SCORES))
    # Scores on the scale of the book's linear_scoring demo would overflow a naive exp().
    probs = softmax(np.array([[7963.93, -2930.99, 3362.47]]))
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs, [[1.0, 0.0, 0.0]], atol=1e-300)


def test_cross_entropy_mean_and_confident_mistakes() -> None:
    scores = np.vstack([BOOK_SOFTMAX_SCORES, BOOK_SOFTMAX_SCORES])
    per = cross_entropy_losses(scores, [PANDA, DOG])
    assert per[1] > per[0]
    assert cross_entropy_loss(scores, [PANDA, DOG]) == pytest.approx(per.mean())
    # Probability exp(-1000) underflows to 0, but the loss stays the finite 1000.
    assert cross_entropy_losses([[1000.0, 0.0, 0.0]], [1])[0] == pytest.approx(1000.0)


def test_losses_reject_labels_that_do_not_fit_the_scores() -> None:
    with pytest.raises(ValueError):
        hinge_losses(BOOK_HINGE_SCORES, [0, 1])
    with pytest.raises(ValueError):
        cross_entropy_losses(BOOK_HINGE_SCORES, [0, 1, 3])


def test_linear_classifier_draws_w_and_b_as_the_book() -> None:
    saved = np.random.get_state()
    try:
        np.random.seed(1)
        book_W = np.random.randn(3, 3072)
        book_b = np.random.randn(3)
    finally:
        np.random.set_state(saved)
    model = LinearClassifier(dim=3072, classes=3, seed=1)
    np.testing.assert_array_equal(model.W, book_W)
    np.testing.assert_array_equal(model.b, book_b)
    assert model.W[0, 0] == pytest.approx(1.6243453636632417)  # the seed-1 stream's first draw
    # No global state touched: the global stream is where it was.
    now = np.random.get_state()
    assert now[2] == saved[2] and np.array_equal(now[1], saved[1])
    assert not np.allclose(LinearClassifier(3072, 3, seed=2).W, book_W)


def test_linear_scores_are_w_x_plus_b() -> None:
    model = LinearClassifier(dim=4, classes=3, seed=0)
    model.W = np.array([[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, -1.0]])
    model.b = np.array([0.5, 0.0, -0.5])
    x = np.array([1.0, 1.0, 7.0, -3.0])
    np.testing.assert_allclose(model.scores(x), [1.5, 2.0, 2.5])
    assert model.predict(x) == 2
    batch = np.vstack([x, [3.0, 0, 0, 0]])
    np.testing.assert_allclose(model.scores(batch), [[1.5, 2.0, 2.5], [3.5, 0.0, -0.5]])
    np.testing.assert_array_equal(model.predict(batch), [2, 0])
    with pytest.raises(ValueError):
        model.scores(np.ones(5))
