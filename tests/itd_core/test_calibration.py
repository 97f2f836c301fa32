import numpy as np
import pytest

from itd_core.calibration import fpr_threshold, paper_threshold, rates, roc_curve
from itd_core.errors import ItdError


def test_paper_rule_is_99_percent_of_the_lowest_target_score():
    assert paper_threshold([0.5, 0.2, 0.9]) == pytest.approx(0.99 * 0.2)
    assert rates(paper_threshold([0.5, 0.2, 0.9]), [0.5, 0.2, 0.9]).tpr == 1.0


@pytest.mark.parametrize("target_fpr", [0.0, 0.01, 0.1, 0.25])
def test_fpr_rule_is_the_lowest_threshold_within_the_target_rate(target_fpr):
    retain = np.random.default_rng(0).random(200)
    threshold = fpr_threshold(retain, target_fpr)
    assert (retain >= threshold).mean() <= target_fpr
    lower = np.nextafter(np.float32(np.sort(retain[retain < threshold])[-1]), -np.inf)
    assert (retain >= lower).mean() > target_fpr


def test_rates_and_roc():
    measured = rates(0.5, target_scores=[0.4, 0.6, 0.7, 0.9], retain_scores=[0.1, 0.55])
    assert (measured.tpr, measured.fpr) == (0.75, 0.5)
    fpr, tpr, thresholds = roc_curve([0.4, 0.6], [0.1, 0.55])
    assert tpr[-1] == 1.0 and fpr[-1] == 1.0 and thresholds[0] == 0.6


def test_bad_inputs():
    with pytest.raises(ItdError):
        paper_threshold([])
    with pytest.raises(ItdError):
        fpr_threshold([0.1], 1.5)
