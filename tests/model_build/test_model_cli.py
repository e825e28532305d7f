"""`python -m model_build.train --data DIR` and `python -m model_build.evaluate --data DIR` end to end, on a
tiny generated e-commerce directory (one epoch of a small model; no MovieLens data)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tensorflow")


@pytest.mark.slow
def test_train_and_evaluate_on_a_directory(tmp_path):
    from dataio import synthetic
    from model_build import evaluate, train

    data_dir = tmp_path / "shop"
    synthetic.write(data_dir, synthetic.Config(items=80, categories=6, users=40, events=2500, seed=3))
    model_dir, weights = tmp_path / "model", tmp_path / "work" / "weights.h5"
    train.main(
        [
            *("--data", str(data_dir), "--out", str(model_dir), "--weights", str(weights)),
            *("--epochs", "1", "--modes", "dynamic_range", "--encoder-units", "8"),
        ]
    )
    metadata = json.loads((model_dir / "metadata.json").read_text())
    assert metadata["data"]["items"] == 80 and metadata["data"]["categories"] == 6
    assert metadata["outputs"]["interests"]["shape"] == [1, 6]
    assert json.loads((model_dir / "items.json").read_text())["categories"][0].count(" > ") == 2
    blend = metadata["cooccurrence"]  # chosen on validation by the build; a file ships only with a blend
    assert blend["chosen_on"].startswith("validation")
    assert (model_dir / "cooccurrence.npz").exists() == ("serving" in blend)

    report_dir = tmp_path / "reports"
    report_dir.mkdir()
    (report_dir / "report.md").write_text("# MovieLens numbers\n")
    evaluate.main(
        [
            *("--data", str(data_dir), "--model-dir", str(model_dir), "--weights", str(weights)),
            *("--report-dir", str(report_dir), "--note", "Chosen on validation."),
        ]
    )
    report = json.loads((report_dir / "report-shop.json").read_text())
    assert {"most popular", "co-occurrence (last item)", "Keras float", "TFLite quantized (Scorer)"} <= set(
        report["methods"]
    )
    assert report["peer_reference"] == {} and report["model_version"] == metadata["version"]
    main_md = (report_dir / "report.md").read_text()
    assert main_md.startswith("# MovieLens numbers\n") and "## Dataset: shop (" in main_md
    assert "Chosen on validation." in main_md and "Validation after each epoch" in main_md
    assert report["training"]["learning_rate"] == train.LEARNING_RATE
    assert (report_dir / "report-shop.png").stat().st_size > 0
