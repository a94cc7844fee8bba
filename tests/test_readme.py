"""The README's quick tour runs as written.

Every ```python block of the "A quick tour" section runs, in order, in one namespace, with a
temporary working directory (the tour writes `my_lm/` and `saved_models/`). Tracebacks
point at README.md's own line numbers.

Marker convention: a tour block whose first line is exactly `SKIP_MARKER` needs files that
must be downloaded first (a released checkpoint); it is shown to readers but not run, and
this test allows `MAX_SKIPPED` such blocks, so that more need a deliberate change here.
"""

import pathlib
import re
import traceback

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
TOUR_HEADING = "## A quick tour"
SKIP_MARKER = "# Needs downloaded files: not run by tests/test_readme.py."
MAX_SKIPPED = 1
# What the tour must show (keras-hub-style use of the zoo), as it appears in the code.
REQUIRED = (
    '.from_preset("glam_tiny_8"',
    '.generate("',
    '.save_to_preset("my_lm")',
    '.from_preset("my_lm")',
    "SwitchClassifier.from_preset(",
    "WordpieceTokenizer(",
    "export_saved_model(",
)
_FENCE = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def tour_blocks(text):
    """`[(first_line, code), ...]` of the python blocks in the quick-tour section.

    The section runs from its `## ` heading to the next `## ` heading; `first_line` is the
    1-based README line of the block's first code line.
    """
    start = text.index(TOUR_HEADING + "\n")
    end = text.find("\n## ", start + len(TOUR_HEADING))
    section = text[start : end if end != -1 else len(text)]
    offset = text[:start].count("\n")
    return [
        (offset + section[: match.start(1)].count("\n") + 1, match.group(1))
        for match in _FENCE.finditer(section)
    ]


def runnable(blocks):
    return [(line, code) for line, code in blocks if code.splitlines()[0] != SKIP_MARKER]


def test_tour_blocks_are_found_and_cover_the_keras_hub_api():
    text = README.read_text(encoding="utf-8")
    blocks = tour_blocks(text)
    lines = text.splitlines()
    for first_line, code in blocks:  # line numbers point at the block's first code line
        assert lines[first_line - 2] == "```python"
        assert lines[first_line - 1] == code.splitlines()[0]
    run = runnable(blocks)
    assert run and len(blocks) - len(run) <= MAX_SKIPPED, "the tour must run offline"
    code = "\n".join(code for _, code in run)
    missing = [call for call in REQUIRED if call not in code]
    assert not missing, f"the runnable tour no longer shows {missing}"


def test_tour_block_parser():
    text = (
        "# t\n\n## A quick tour\n\n```python\na = 1\n```\n\n```sh\nls\n```\n"
        f"```python\n{SKIP_MARKER}\nb = 2\n```\n## Next\n```python\nc = 3\n```\n"
    )
    blocks = tour_blocks(text)
    assert blocks == [(6, "a = 1\n"), (13, f"{SKIP_MARKER}\nb = 2\n")]
    assert runnable(blocks) == [(6, "a = 1\n")]


def run_blocks(blocks):
    """Executes `[(first_line, code), ...]` in order in one namespace; returns the namespace."""
    namespace = {"__name__": "__readme__"}
    for first_line, code in blocks:
        # Blank lines in front keep README.md's line numbers in tracebacks.
        exec(compile("\n" * (first_line - 1) + code, str(README), "exec"), namespace)
    return namespace


def test_runner_reports_the_readme_line_of_a_failure():
    with pytest.raises(RuntimeError, match="tour broke") as error:
        run_blocks([(3, "x = 1\nraise RuntimeError('tour broke')\n")])
    frame = traceback.extract_tb(error.tb)[-1]
    assert (frame.filename, frame.lineno) == (str(README), 4)


def test_quick_tour_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_blocks(runnable(tour_blocks(README.read_text(encoding="utf-8"))))
    # What the tour says it writes.
    assert (tmp_path / "my_lm" / "config.json").is_file()
    assert (tmp_path / "saved_models" / "supersense" / "1" / "saved_model.pb").is_file()
