"""The judge: SSIM as scikit-image computes it, chance measured per count, decoys not leaked, noisy truths leaked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from attacker.metrics import psnr, similarity, ssim
from fl_sim.config import RunConfig

from judging import judge_for

#: Updates drawn per count (two kinds of decoys each): enough to tell a 1% rate from the old criterion's.
DRAWS = {1: 200, 8: 60, 32: 40, 128: 20}


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_and_psnr_equal_scikit_image_for_pairs_and_all_pairs(channels):
    rng = np.random.default_rng(channels)
    truth = rng.random((3, channels, 32, 32))
    recon = np.clip(truth[[1, 0, 2]] + 0.2 * rng.standard_normal(truth.shape), 0, 1)
    hwc = np.moveaxis
    every = ssim(torch.from_numpy(recon)[:, None], torch.from_numpy(truth)[None]).numpy()
    for i in range(3):
        for j in range(3):
            expected = structural_similarity(hwc(recon[i], 0, -1), hwc(truth[j], 0, -1), data_range=1.0,
                                             channel_axis=-1)
            assert abs(every[i, j] - expected) < 1e-6
    scores = similarity(torch.from_numpy(recon), torch.from_numpy(truth))
    assert all(abs(s.psnr - peak_signal_noise_ratio(t, r, data_range=1.0)) < 1e-6
               for s, r, t in zip(scores, recon, truth))
    assert psnr(torch.from_numpy(truth), torch.from_numpy(truth)).isinf().all()
    assert ssim(torch.from_numpy(truth), torch.from_numpy(truth)).numpy() == pytest.approx([1.0] * 3)


@pytest.fixture(scope="module")
def judge():
    """The default run's judge: digits at 32x32, every image of the data set."""
    return judge_for(RunConfig().data)


@pytest.mark.parametrize("count", [1, 8, 32, 128])
def test_real_images_the_client_never_held_are_not_judged_leaked(judge, count):
    """Decoys, at random and of the images' own labels, as the reconstructions of an update of ``count`` images.

    The old criterion (SSIM >= 0.6 over the assignment) called most batches of 8 or more leaked.
    """
    rng = np.random.default_rng(count)
    labels = judge.data.labels.numpy()
    verdicts = []
    for _ in range(DRAWS[count]):
        order = rng.permutation(len(labels))
        held = order[:count]
        same_label = np.array([rng.choice(np.setdiff1d(np.flatnonzero(labels == label), held)) for label in
                               labels[held]])
        for decoys in (order[count:2 * count], same_label):
            images, decoy_labels = judge.truth(decoys).tensors()
            verdicts.append(judge(images, decoy_labels, held, excluded=decoys))
    images = [image for verdict in verdicts for image in verdict.images]
    assert np.mean([image.leaked for image in images]) <= 0.01
    assert np.mean([verdict.leaked for verdict in verdicts]) <= 0.05


@pytest.mark.parametrize("count", [1, 8, 32, 128])
def test_true_images_with_noise_at_25_db_still_leak(judge, count):
    """Gaussian noise of standard deviation 10^(-25/20) (25 dB before clipping to [0, 1])."""
    rng = np.random.default_rng(count)
    generator = torch.Generator().manual_seed(count)
    verdicts = []
    for _ in range(10):
        held = rng.permutation(len(judge.data))[:count]
        truth, labels = judge.truth(held).tensors()
        noisy = truth + 10 ** (-25 / 20) * torch.randn(truth.shape, generator=generator)
        verdicts.append(judge(noisy, labels, held))
    assert all(verdict.leaked for verdict in verdicts)
    assert np.mean([image.leaked for verdict in verdicts for image in verdict.images]) >= 0.95
    assert np.mean([verdict.iip for verdict in verdicts]) >= 0.95


def test_the_margin_a_leak_needs_grows_with_the_count(judge):
    margins = [judge.chance.at(count, count).required_margin_db for count in (1, 8, 32, 128)]
    assert margins == sorted(margins) and margins[-1] > margins[0] + 3
    assert all(judge.chance.at(count, count).decoy_update_rate <= 0.005 for count in (1, 8, 32, 128))


def test_more_reconstructions_than_images_buy_nothing(judge):
    """The true image returned among seven decoys.

    Chance is measured at eight guesses, and the seven left over after the one-to-one match never leak.
    """
    held, decoys = [3], list(range(100, 107))
    truth, labels = judge.truth(held).tensors()
    guesses, guess_labels = judge.truth(decoys).tensors()
    verdict = judge(torch.cat([guesses, truth]), torch.cat([guess_labels, labels]), held, excluded=decoys)
    assert verdict.chance.reconstructions == 8 and verdict.chance.held == 1
    assert verdict.chance.required_margin_db > judge.chance.at(1, 1).required_margin_db
    assert verdict.images_leaked == 1 and verdict.images[-1].leaked
    assert sum(not image.assigned for image in verdict.images) == 7


def test_the_nearest_other_image_of_the_data_set_does_not_leak_the_true_one(judge):
    """A reconstruction that is another real image, the most similar one to the truth.

    The old criterion called it a leak (its SSIM reaches 0.6); it identifies nothing, since it is itself in the
    reference.
    """
    held = [3]
    truth, labels = judge.truth(held).tensors()
    others, other_labels = judge.data.tensors()
    similar = ssim(others, truth)
    similar[held] = -1
    nearest = int(similar.argmax())
    assert similar[nearest] >= 0.6
    verdict = judge(others[[nearest]], other_labels[[nearest]], held)
    assert verdict.images[0].scores.ssim >= 0.6 and not verdict.leaked and verdict.images[0].margin_db < 0
