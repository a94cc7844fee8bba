"""`make demo` (tfmoe.demo) end to end, with a few steps."""

import pytest

from tfmoe import demo


@pytest.mark.slow  # trains, exports and generates: about a minute on 2 cores
def test_demo_trains_reports_and_answers(tmp_path, capsys):
    demo.main(
        [
            "--steps=2",
            "--steps_per_epoch=2",
            "--batch_size=4",
            "--sequence_length=32",
            f"--output_dir={tmp_path / 'run'}",
            f"--export_dir={tmp_path / 'export'}",
        ]
    )
    out = capsys.readouterr().out
    assert "validation perplexity:" in out
    assert (
        "expert load" in out
        and "decoder_block_1_feed_forward" in out
        and "decoder_block_3_feed_forward" in out
    )
    assert "request 'a hacker is' ->" in out
    assert "demo finished" in out
    # TF Serving's layout: the model directory holds numbered versions.
    version_dir = tmp_path / "export" / "1"
    assert (version_dir / "saved_model.pb").is_file() and (version_dir / "variables").is_dir()
    assert f"export: SavedModel written to {version_dir}" in out
    assert "served by the SavedModel" in out


def test_demo_exports_to_a_numbered_version_by_default(capsys):
    """`make demo` writes `saved_models/demo_lm/1/`: TF Serving's MODEL/VERSION layout."""
    args = demo.parse_args([])
    assert (args.export_dir, args.version) == ("saved_models/demo_lm", 1)
    with pytest.raises(SystemExit):
        demo.parse_args(["--version=0"])
    assert "--version must be a positive integer" in capsys.readouterr().err
