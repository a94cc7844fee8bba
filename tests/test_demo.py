"""`make demo` (tfmoe.demo) end to end, with a few steps."""

import pytest

from tfmoe import demo


@pytest.mark.slow  # trains, exports and generates: about a minute on 2 cores
def test_demo_trains_reports_and_answers(tmp_path, capsys):
    demo.main(["--steps=2", "--steps_per_epoch=2", "--batch_size=4", "--sequence_length=32",
               f"--output_dir={tmp_path / 'run'}", f"--export_dir={tmp_path / 'export'}"])
    out = capsys.readouterr().out
    assert "validation perplexity:" in out
    assert "expert load" in out and "decoder_block_1_feed_forward" in out and "decoder_block_3_feed_forward" in out
    assert "request 'a hacker is' ->" in out
    assert "demo finished" in out
