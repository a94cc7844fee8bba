"""experiments/pretrain.py and tfmoe.training: flags, resume after SIGKILL, NaN, mixed precision, plots."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmoe import cli
from tfmoe.training import (
    NonFiniteGuard,
    NonFiniteLossError,
    PretrainConfig,
    StrategyError,
    backup,
    resolve_strategy,
    run_pretraining,
)
from tfmoe.training import callbacks as cb
from tfmoe.training.pretraining import validate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETRAIN = os.path.join(REPO, "experiments", "pretrain.py")
# Tiny and fast: 2 layers (one sparse), short sequences.
TINY_FLAGS = [
    "--model=switch_lm_tiny_8",
    "--batch_size=4",
    "--sequence_length=32",
    "--validation_steps=1",
    "--override=num_layers=2",
    "--verbose=2",
    "--strategy=cpu",
]


def _env():
    return dict(
        os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow", PYTHONUNBUFFERED="1"
    )


def _run(args, **kwargs):
    return subprocess.run(
        [sys.executable, PRETRAIN, *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=REPO,
        **kwargs,
    )


def _error_lines(stderr):
    return [line for line in stderr.splitlines() if "pretrain.py: error:" in line]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model=no_such_preset"], "Unknown preset: 'no_such_preset'"),
        (
            ["--strategy=mirrored", "--cpu_replicas=2", "--batch_size=3"],
            "not divisible by the 2 replicas",
        ),
    ],
)
def test_bad_flags_exit_nonzero_with_one_clear_line(tmp_path, args, message):
    result = _run([*args, f"--output_dir={tmp_path}"], timeout=120)
    assert result.returncode != 0
    errors = _error_lines(result.stderr)
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(dataset="/no/such/file.txt"), "--dataset file not found"),
        (dict(vocabulary="/no/such/vocab.txt"), "--vocabulary file not found"),
        (dict(sequence_length=0), "--sequence_length must be a positive integer"),
        (dict(steps=10, steps_per_epoch=3), "multiple of --steps_per_epoch"),
    ],
)
def test_bad_configs_raise_one_line_errors(overrides, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message.replace("-", r"\-")) as info:
        validate(PretrainConfig(**overrides))
    assert "\n" not in str(info.value)


def test_strategy_resolution():
    assert resolve_strategy("cpu").num_replicas_in_sync == 1
    assert resolve_strategy("auto").num_replicas_in_sync >= 1
    with pytest.raises(StrategyError, match="unknown strategy"):
        resolve_strategy("quantum")


@pytest.mark.slow  # two subprocess runs: about 1-2 minutes on 2 cores
def test_resume_after_sigkill(tmp_path):
    """SIGKILL mid-run, same command again: resumes from the backup, ends at --steps."""
    out = tmp_path / "run"
    args = [*TINY_FLAGS, "--steps=8", "--steps_per_epoch=2", f"--output_dir={out}"]
    proc = subprocess.Popen(
        [sys.executable, PRETRAIN, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_env(),
        cwd=REPO,
    )
    deadline = time.time() + 240
    epoch = 0
    while time.time() < deadline and proc.poll() is None:
        epoch = backup.backed_up_epoch(str(out / "backup"))
        if epoch >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, (
        "run finished before it could be killed: " + proc.stdout.read().decode()[-2000:]
    )
    assert epoch >= 1, "no backup written in time"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()

    result = _run(args, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Resuming from the backup" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 8
    assert summary["resumed_from_epoch"] >= 1
    history = cb.read_history(str(out / "history.jsonl"))
    assert [r["step"] for r in history] == [2, 4, 6, 8]


def test_short_mixed_bfloat16_run_is_finite_and_writes_outputs(tmp_path):
    summary = run_pretraining(
        PretrainConfig(
            model="switch_lm_tiny_8",
            steps=4,
            steps_per_epoch=2,
            batch_size=4,
            sequence_length=32,
            validation_steps=1,
            mixed_precision=True,
            strategy="cpu",
            verbose=0,
            output_dir=str(tmp_path),
            model_overrides={"num_layers": 2},
        )
    )
    assert summary["step"] == 4
    history = summary["history"]
    assert len(history) == 2
    for record in history:
        assert np.isfinite(record["loss"]) and np.isfinite(record["val_loss"])
        assert np.isfinite(record["val_perplexity"])
    load = summary["expert_load"]
    assert list(load) == ["decoder_block_1_feed_forward"]
    assert len(load["decoder_block_1_feed_forward"]) == 8
    assert sum(load["decoder_block_1_feed_forward"]) == pytest.approx(1.0, abs=1e-4)
    assert "decoder_block_1_feed_forward/dropped_fraction" in history[-1]
    for name in (
        "loss_curves.png",
        "expert_load_heatmap.png",
        "model.weights.h5",
        "vocab.txt",
        "checkpoints/best.weights.h5",
        "backup/epoch_000002.weights.h5",
        "summary.json",
        "preset/config.json",
        "preset/model.weights.h5",
        "preset/task.json",
        "preset/assets/tokenizer/vocabulary.txt",
    ):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nan_loss_stops_training_before_any_checkpoint(tmp_path):
    x = np.ones([16, 4], "float32")
    y = np.ones([16, 1], "float32")
    y[9] = np.nan  # third batch of 4
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    checkpoint = tmp_path / "ckpt.weights.h5"
    with pytest.raises(NonFiniteLossError, match="loss became nan"):
        model.fit(
            x,
            y,
            batch_size=4,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[
                NonFiniteGuard(),
                keras.callbacks.ModelCheckpoint(str(checkpoint), save_weights_only=True),
            ],
        )
    assert not checkpoint.exists()


def test_non_finite_weights_stop_training_at_the_epoch_end():
    # The loss of the last step of an epoch is computed before its update: only the
    # weight check sees that this update broke the weights.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    guard = NonFiniteGuard()
    guard.set_model(model)
    guard.on_epoch_end(0)  # finite: nothing happens
    bias = model.layers[1].bias
    bias.assign([np.inf])
    with pytest.raises(NonFiniteLossError, match=f"weight {bias.path} is not finite after epoch 2"):
        guard.on_epoch_end(1)


FINETUNE = os.path.join(REPO, "experiments", "finetune.py")


def test_finetune_bad_task_file(tmp_path):
    result = subprocess.run(
        [sys.executable, FINETUNE, "--task=/no/such.tsv", f"--output_dir={tmp_path}"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode != 0
    assert [line for line in result.stderr.splitlines() if "finetune.py: error:" in line] == [
        "finetune.py: error: --task file not found: /no/such.tsv"
    ]


def test_compare_steps_to_reach_interpolates(load_script):
    compare = load_script("compare")
    history = [
        {"step": s, "val_perplexity": float(np.exp(v)), "train_time": 1.0}
        for s, v in ((10, 5.0), (20, 4.0), (30, 3.0))
    ]
    assert compare.steps_to_reach(history, 3.5) == pytest.approx(25.0)
    assert compare.steps_to_reach(history, 6.0) == pytest.approx(10.0)
    assert compare.steps_to_reach(history, 2.0) is None
    assert compare.step_times(history) == [0.1, 0.1]


def _fake_history(final, step_time, steps=(100, 200, 300, 400)):
    """Validation CE falling linearly to `final`; `step_time` seconds per step."""
    values = np.linspace(final + 1.5, final, len(steps))
    return [
        {"step": s, "val_perplexity": float(np.exp(v)), "train_time": step_time * 100}
        for s, v in zip(steps, values)
    ]


def test_compare_summarizes_seeds_and_writes_labelled_plots(load_script, tmp_path):
    compare = load_script("compare")
    models = ["dense_lm_small", "switch_lm_small_8", "switch_lm_small_16", "glam_lm_small_8"]
    runs = {
        "dense_lm_small": {
            s: {
                "history": _fake_history(4.0 + 0.1 * s, 0.4),
                "params": 10,
                "active_params": 10,
                "num_experts": 0,
            }
            for s in (0, 1)
        },
        "switch_lm_small_8": {
            s: {
                "history": _fake_history(3.8 + 0.1 * s, 0.44),
                "params": 30,
                "active_params": 10,
                "num_experts": 8,
            }
            for s in (0, 1)
        },
        # One seed only: the experts plot then uses seed 0 of every model.
        "switch_lm_small_16": {
            s: {
                "history": _fake_history(3.9, 0.48),
                "params": 50,
                "active_params": 10,
                "num_experts": 16,
            }
            for s in (0,)
        },
        # One top-2 model: not on the top-1 experts curve.
        "glam_lm_small_8": {
            s: {
                "history": _fake_history(3.7, 0.5),
                "params": 20,
                "active_params": 10,
                "num_experts": 8,
                "top_k": 2,
            }
            for s in (0, 1)
        },
    }
    rows = compare.summarize(runs, models)
    sparse = rows["switch_lm_small_8"]
    assert sparse["mean_final_val_ce"] == pytest.approx(3.85)
    assert sparse["time_ratio"] == pytest.approx(1.1)
    # Each seed against the baseline of the same seed: the dense final loss (4.0 / 4.1)
    # (values 4.3 and 3.8 at steps 300 and 400) is reached at step 360.
    assert sparse["steps_to_reach_fraction"] == pytest.approx([360 / 400, 360 / 400])
    assert rows["dense_lm_small"]["steps_to_reach_fraction"] == [1.0, 1.0]
    text = compare.write_table(str(tmp_path / "compare.md"), rows, runs, models, "cmd")
    assert "| `switch_lm_small_8` |" in text and "90% / 90%" in text
    written = compare.write_plots(str(tmp_path), runs, rows, models)
    assert [os.path.basename(p) for p in written] == [
        "compare_steps.png",
        "compare_time.png",
        "compare_experts.png",
    ]
    assert all(os.path.getsize(p) > 10_000 for p in written)


def test_compare_reads_finished_runs_from_disk(load_script, tmp_path):
    """--report_only: every finished `seed_S` run counts; an unfinished one (no summary) does not."""
    compare = load_script("compare")
    for seed, finished in ((0, True), (3, True), (5, False)):
        run_dir = tmp_path / "glam_lm_small_8" / f"seed_{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "model_config.json").write_text(json.dumps({"vocabulary_size": 1000}))
        (run_dir / "history.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in _fake_history(3.7, 0.5))
        )
        if finished:
            (run_dir / "summary.json").write_text(json.dumps({"train_time_s": 12.5}))
    assert compare.finished_seeds(str(tmp_path), "glam_lm_small_8") == [0, 3, 5]
    assert compare.finished_seeds(str(tmp_path), "dense_lm_small") == []
    assert (
        compare.load_run(str(tmp_path / "glam_lm_small_8" / "seed_5"), "glam_lm_small_8", {})
        is None
    )
    run = compare.load_run(str(tmp_path / "glam_lm_small_8" / "seed_3"), "glam_lm_small_8", {})
    from tfmoe.models import count_active_params, count_params

    assert run["params"] == count_params("glam_lm_small_8", vocabulary_size=1000)
    assert run["active_params"] == count_active_params("glam_lm_small_8", vocabulary_size=1000)
    assert run["params"] > run["active_params"]
    assert (run["num_experts"], run["top_k"], run["train_time_s"]) == (8, 2, 12.5)
    assert len(run["history"]) == len(_fake_history(3.7, 0.5))


# Clear one-line errors of the scripts, and inputs refused before training ---------------


def _script_exit(load_script, capsys, name, argv):
    """Runs `experiments/NAME.py` in-process (flag parsing, then `main`); returns its
    stderr lines, after checking it exits with status 2."""
    module = load_script(name)
    with pytest.raises(SystemExit) as info:
        module.main(cli.flags_parser(f"{name}.py")([f"{name}.py", *argv]))
    assert info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    "name, flag",
    [
        ("pretrain", "--steps_per_epoch=-5"),
        ("pretrain", "--steps=0"),
        ("pretrain", "--batch_size=-1"),
        ("pretrain", "--sequence_length=0"),
        ("pretrain", "--validation_steps=0"),
        ("finetune", "--steps_per_epoch=-5"),
        ("finetune", "--batch_size=0"),
    ],
)
def test_invalid_numeric_flags_are_named(load_script, capsys, name, flag):
    lines = _script_exit(load_script, capsys, name, [flag])
    assert len(lines) == 1 and lines[0].startswith(f"{name}.py: error: flag {flag}: "), lines
    assert "positive integer" in lines[0]


def test_invalid_flag_exits_without_a_traceback():
    result = _run(["--steps_per_epoch=-5"], timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert _error_lines(result.stderr) == [
        "pretrain.py: error: flag --steps_per_epoch=-5: -5 is not a positive integer"
    ]


@pytest.mark.parametrize("where", ["file", "under_a_file"])
def test_pretrain_output_dir_that_is_a_file(load_script, capsys, tmp_path, where):
    existing = tmp_path / "results.txt"
    existing.write_text("not a directory")
    output_dir = existing if where == "file" else existing / "run"
    lines = _script_exit(
        load_script, capsys, "pretrain", [f"--output_dir={output_dir}", "--strategy=cpu"]
    )
    suffix = "" if where == "file" else f": {existing}"
    assert lines == [
        f"pretrain.py: error: --output_dir={output_dir}{suffix} is a file, not a directory"
    ]


def test_unwritable_output_dir_is_refused(tmp_path, monkeypatch):
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root may write anywhere: answer as for an ordinary user
        access = os.access
        monkeypatch.setattr(
            os, "access", lambda path, mode: path != str(read_only) and access(path, mode)
        )
    with pytest.raises(
        ValueError, match=rf"--output_dir={read_only}/run: {read_only} is not writable"
    ):
        validate(PretrainConfig(output_dir=str(read_only / "run")))


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "line 1: byte 0x89 is not UTF-8"),
        (b"GIF89a\n\x01\x00\x01\x00", "line 2: NUL byte (binary data)"),
        ("first line\ncaf\u00e9 au lait\n".encode("latin-1"), "line 2: byte 0xe9 is not UTF-8"),
    ],
)
def test_dataset_that_is_not_utf8_text_is_refused(tmp_path, content, problem):
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        validate(PretrainConfig(dataset=str(path), output_dir=str(tmp_path / "run")))
    assert str(info.value) == f"--dataset file {path} is not UTF-8 text ({problem})"


def _split_of(text):
    from tfmoe.training.data import is_validation_document

    return "validation" if bool(is_validation_document(tf.constant(text))) else "train"


def _document_in(split, words=200):
    """A long document that the local-file split puts in `split`."""
    return next(
        text
        for i in range(1000)
        for text in [" ".join(f"hacker {i} wrote a kludge" for _ in range(words // 5))]
        if _split_of(text) == split
    )


def test_local_files_are_split_by_a_stable_hash_of_each_document(tmp_path):
    from tfmoe.training.data import text_splits

    documents = [f"document number {i} about the jargon file" for i in range(200)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(documents) + "\n")
    train, validation = (
        [t.decode() for t in split.as_numpy_iterator()] for split in text_splits(str(path))
    )
    assert train == [d for d in documents if _split_of(d) == "train"]
    assert validation == [d for d in documents if _split_of(d) == "validation"]
    assert 0 < len(validation) < 30
    # The split follows the text, not the position: reversed file, same split of each document.
    backwards = tmp_path / "backwards.txt"
    backwards.write_text("\n".join(reversed(documents)) + "\n")
    assert [t.decode() for t in text_splits(str(backwards))[1].as_numpy_iterator()] == validation[
        ::-1
    ]
    one = tmp_path / "one.txt"
    one.write_text(_document_in("train") + "\n")
    assert [len(list(split)) for split in text_splits(str(one))] == [1, 0]


def test_empty_train_split_is_refused_before_training(tmp_path):
    """One long document that hashes to validation: nothing to train on."""
    path = tmp_path / "one_document.txt"
    path.write_text(_document_in("validation") + "\n")
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=rf"^the train split of --dataset={path} holds no batch"):
        run_pretraining(
            PretrainConfig(
                model="switch_lm_tiny_8",
                dataset=str(path),
                steps=2,
                steps_per_epoch=2,
                batch_size=2,
                sequence_length=16,
                strategy="cpu",
                verbose=0,
                output_dir=str(out),
                model_overrides={"num_layers": 2},
            )
        )
    assert not (out / "summary.json").exists()


def _finetune_task(tmp_path, rows):
    path = tmp_path / "task.tsv"
    path.write_bytes(b"text\tlabel\n" + b"".join(rows))
    return path


@pytest.mark.parametrize(
    "rows, message",
    [
        ([b"the cat\tnoun\n", b"runs\n"], "task.tsv: row 3, column 'label': missing"),
        ([b"word %d\t\n" % i for i in range(30)], "task.tsv: row 2, column 'label' is empty"),
        (
            [b"the cat\tnoun\n", b"caf\xe9\tnoun\n"],
            "task.tsv: row 3, column 'text': byte 0xe9 is not UTF-8",
        ),
        (
            [b"word %d\tnoun\n" % i for i in range(30)],
            "has 1 class ('noun'): a classifier needs at least 2",
        ),
    ],
)
def test_finetune_refuses_bad_task_files_in_one_line(load_script, capsys, tmp_path, rows, message):
    task = _finetune_task(tmp_path, rows)
    lines = _script_exit(
        load_script,
        capsys,
        "finetune",
        [
            f"--task={task}",
            "--steps=2",
            "--batch_size=2",
            "--strategy=cpu",
            f"--output_dir={tmp_path / 'ft'}",
        ],
    )
    assert (
        len(lines) == 1 and lines[0].startswith("finetune.py: error: ") and message in lines[0]
    ), lines


@pytest.mark.parametrize("missing", ["model", "vocabulary"])
def test_export_missing_files_in_one_line(load_script, capsys, tmp_path, missing):
    from tfmoe.training.data import DEFAULT_VOCABULARY

    files = {"model": tmp_path / "model.keras", "vocabulary": DEFAULT_VOCABULARY}
    files[missing] = tmp_path / f"no_{missing}"
    if missing != "model":
        files["model"].write_bytes(b"")
    lines = _script_exit(
        load_script,
        capsys,
        "export",
        [
            f"--model={files['model']}",
            f"--vocabulary={files['vocabulary']}",
            "--name=clf",
            f"--output_dir={tmp_path / 'saved'}",
        ],
    )
    assert lines == [f"export.py: error: --{missing} file not found: {files[missing]}"]


EXPORT = os.path.join(REPO, "experiments", "export.py")


def test_pretrain_finetune_export_serve_end_to_end(tmp_path):
    """pretrain -> finetune --init_from=<preset> (TSV task, expert dropout) -> export --preset ->
    a SavedModel that classifies a string in a process importing only tensorflow and tensorflow_text."""
    run_pretraining(
        PretrainConfig(
            model="switch_tiny_8",
            steps=2,
            steps_per_epoch=2,
            batch_size=4,
            sequence_length=32,
            validation_steps=1,
            strategy="cpu",
            verbose=0,
            jit_compile=False,
            output_dir=str(tmp_path / "pretrain"),
        )
    )
    rows = ["text\tlabel"] + [
        f"the {w} runs fast\tverb" if i % 2 else f"a small {w}\tnoun"
        for i, w in enumerate(["cat", "dog", "hacker", "file", "bug", "kludge"] * 8)
    ]
    task = tmp_path / "task.tsv"
    task.write_text("\n".join(rows) + "\n")
    finetune = subprocess.run(
        [
            sys.executable,
            FINETUNE,
            f"--task={task}",
            "--steps=2",
            "--batch_size=4",
            "--sequence_length=16",
            "--strategy=cpu",
            "--verbose=2",
            "--expert_dropout=0.4",
            "--freeze_router",
            "--capacity_factor=1.25",
            "--z_loss_weight=0.001",
            f"--init_from={tmp_path / 'pretrain' / 'preset'}",
            f"--output_dir={tmp_path / 'ft'}",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=REPO,
        timeout=600,
    )
    assert finetune.returncode == 0, finetune.stdout[-2000:] + finetune.stderr[-3000:]
    assert "initialised the embedding and encoder from" in finetune.stdout
    assert "validation: accuracy" in finetune.stdout
    assert "froze 1 routers" in finetune.stdout  # switch_tiny_8 encoder: layer 1 of 2 is sparse
    results = json.loads((tmp_path / "ft" / "results.json").read_text())
    assert results["step"] == 2 and results["num_classes"] == 2
    assert 0.0 <= results["validation"]["accuracy"] <= 1.0
    # The classifier, its tokenizer and label names as a keras-hub preset.
    from tfmoe.models import SwitchClassifier, load_task_preset

    classifier = load_task_preset(str(tmp_path / "ft" / "preset"))
    assert isinstance(classifier, SwitchClassifier)
    assert sorted(classifier.label_names) == ["noun", "verb"]
    assert classifier.preprocessor.sequence_length == 16
    backbone = classifier.backbone
    assert (backbone.expert_dropout, backbone.capacity_factor, backbone.z_loss_weight) == (
        0.4,
        1.25,
        0.001,
    )
    export = subprocess.run(
        [
            sys.executable,
            EXPORT,
            f"--preset={tmp_path / 'ft' / 'preset'}",
            "--name=clf",
            f"--output_dir={tmp_path / 'served'}",
            "--sequence_length=16",
            "--jit_compile=false",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=REPO,
        timeout=600,
    )
    assert export.returncode == 0, export.stdout[-2000:] + export.stderr[-3000:]
    serve = (
        "import sys, tensorflow as tf, tensorflow_text\n"
        "model = tf.saved_model.load(sys.argv[1])\n"
        "out = model.signatures['serving_default'](text=tf.constant(['a small dog']))\n"
        "print(out['label'].numpy()[0].decode())\n"
        "assert 'tfmoe' not in sys.modules and 'keras_hub' not in sys.modules\n"
    )
    served = subprocess.run(
        [sys.executable, "-c", serve, str(tmp_path / "served" / "clf" / "1")],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=str(tmp_path),
        timeout=300,
    )
    assert served.returncode == 0, served.stderr[-3000:]
    assert served.stdout.strip().splitlines()[-1] in ("noun", "verb")
