"""How far each placed photo's verified matches agree with where SfM put it: the summary in
cameras.json, joined over the passes of a flipped capture, and the report's warning per doubtful
photo. (On a real model, with a photo turned off its place: tests/test_pipeline.py.)"""

from __future__ import annotations

from recon import passes, report, sfm


def test_the_summary_names_the_worst_photo_and_those_under_the_bar() -> None:
    shares = {"img_000.jpg": 0.95, "img_001.jpg": 0.42, "img_002.jpg": 0.15, "img_003.jpg": 0.9}
    summary = sfm.agreement_summary(shares, min_agreement=0.3)
    assert summary["min"] == 0.15
    assert summary["worst_image"] == "img_002.jpg"
    assert summary["median"] == round((0.42 + 0.9) / 2, 4)
    assert summary["doubtful"] == {"img_002.jpg": 0.15}  # 42 %: a look-alike pair, not doubtful
    assert sfm.agreement_summary({}, 0.3) == {}


def test_passes_join_as_the_worse_pass_with_every_doubtful_photo() -> None:
    upright = sfm.agreement_summary({"upright__a.jpg": 0.9, "upright__b.jpg": 0.2}, 0.3)
    flipped = sfm.agreement_summary({"flipped__a.jpg": 0.1, "flipped__b.jpg": 0.8}, 0.3)
    joined = passes.joined_agreement([upright, flipped])
    assert joined["worst_image"] == "flipped__a.jpg"
    assert joined["doubtful"] == {"upright__b.jpg": 0.2, "flipped__a.jpg": 0.1}
    assert set(joined["photos"]) == {"upright__a.jpg", "upright__b.jpg", "flipped__a.jpg",
                                     "flipped__b.jpg"}  # fmt: skip
    assert passes.joined_agreement([{}, {}]) == {}


def test_each_doubtful_photo_gets_a_warning_naming_it() -> None:
    summary = sfm.agreement_summary({"img_004.jpg": 0.15, "img_005.jpg": 0.62}, 0.3)
    warnings = report.agreement_warnings(summary)
    assert len(warnings) == 1
    assert warnings[0].startswith("img_004.jpg: only 15% of its matches")
    assert report.agreement_warnings({}) == []
