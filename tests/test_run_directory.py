"""Run directories lose nothing and mix nothing (`tfmoe.training.backup` in `run_pretraining`):
exact resume after a crash, damaged backups, one process per directory, one config per directory."""

import json
import os
import pathlib
import shutil

import keras
import numpy as np
import pytest

from tfmoe.training import PretrainConfig, backup, run_pretraining

TINY = dict(
    model="switch_lm_tiny_8",
    batch_size=4,
    sequence_length=32,
    validation_steps=1,
    strategy="cpu",
    verbose=0,
    steps=4,
    steps_per_epoch=2,
    model_overrides={"num_layers": 2},
    jit_compile=False,
)


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A run directory of `TINY`, trained without interruption: epoch backups 1 and 2."""
    path = tmp_path_factory.mktemp("finished") / "run"
    run_pretraining(PretrainConfig(**TINY, output_dir=str(path)))
    return path


def _copy(run, tmp_path):
    return pathlib.Path(shutil.copytree(run, tmp_path / "run"))


def _weights(path):
    """`{variable path: array}` of the model saved in run directory `path`."""
    from tfmoe.training.pretraining import build_model, make_tokenizer

    config = json.loads((path / "model_config.json").read_text())
    model = build_model(
        config["preset"], make_tokenizer(str(path / "vocab.txt")), **config["overrides"]
    )
    model.load_weights(str(path / "model.weights.h5"))
    weights = {v.path: v.numpy() for v in model.weights}
    assert len(weights) == len(model.weights)  # every path names one variable
    return weights


def _crash_at_step(monkeypatch, step):
    """Makes training raise `Crash` when the optimizer reaches `step` (mid-epoch)."""

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == step:
            raise Crash(step)

    monkeypatch.setattr(backup.EpochBackup, "on_train_batch_end", on_train_batch_end, raising=False)


def test_crashed_and_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(
    finished_run, tmp_path, monkeypatch, capsys
):
    resumed = tmp_path / "resumed"
    with monkeypatch.context() as patch:
        _crash_at_step(patch, 3)  # in epoch 2, after the backup of epoch 1
        with pytest.raises(Crash):
            run_pretraining(PretrainConfig(**TINY, output_dir=str(resumed)))
    assert backup.backed_up_epoch(str(resumed / "backup")) == 1
    summary = run_pretraining(PretrainConfig(**TINY, output_dir=str(resumed)))
    assert summary["resumed_from_epoch"] == 1 and summary["step"] == 4
    assert "Resuming from the backup" in capsys.readouterr().out
    want, got = _weights(finished_run), _weights(resumed)
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=0, err_msg=name)
    history = [json.loads(line) for line in (resumed / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history] == [2, 4]


def test_damaged_newest_backup_falls_back_to_the_one_before_and_says_so(
    finished_run, tmp_path, capsys
):
    out = _copy(finished_run, tmp_path)
    backups = backup.list_backups(str(out / "backup"))
    assert [epoch for epoch, _ in backups] == [2, 1]
    newest = backups[0][1]
    with open(newest, "r+b") as f:
        f.truncate(os.path.getsize(newest) // 2)
    capsys.readouterr()
    summary = run_pretraining(PretrainConfig(**TINY, output_dir=str(out)))
    printed = capsys.readouterr().out
    assert f"backup {newest} does not load" in printed
    assert (
        f"Resuming from the backup {backups[1][1]}: epoch 1 done, training continues at step 2"
        in printed
    )
    assert summary["resumed_from_epoch"] == 1 and summary["step"] == 4


def test_epoch_backups_are_written_atomically_and_only_two_kept(tmp_path, monkeypatch):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    x, y = np.ones([8, 3], "float32"), np.zeros([8, 2], "float32")
    model.fit(x, y, epochs=3, verbose=0, callbacks=[backup.EpochBackup(str(tmp_path))])
    assert sorted(os.listdir(tmp_path)) == ["epoch_000002.weights.h5", "epoch_000003.weights.h5"]

    def dies_half_way(self, filepath, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"\x89HDF\r\n half a file")
        raise Crash(filepath)

    monkeypatch.setattr(keras.Model, "save_weights", dies_half_way)
    with pytest.raises(Crash):
        backup.save_weights_atomic(model, str(tmp_path / "epoch_000003.weights.h5"))
    monkeypatch.undo()
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).load_weights(
        str(tmp_path / "epoch_000003.weights.h5")
    )  # the real name still holds a whole file


def test_second_process_on_a_run_directory_is_refused_with_the_holders_pid(tmp_path):
    out = tmp_path / "run"
    with backup.RunDirectoryLock(str(out)):
        with pytest.raises(RuntimeError, match=rf"in use by another run \(pid {os.getpid()}\)"):
            run_pretraining(PretrainConfig(**TINY, output_dir=str(out)))
    assert os.listdir(out) == [backup.LOCK_FILE]  # nothing else written
    with backup.RunDirectoryLock(str(out)):  # released: can be taken again
        pass


def test_resume_with_another_config_is_refused_before_anything_is_written(finished_run, tmp_path):
    out = _copy(finished_run, tmp_path)
    before = {
        name: (out / name).read_bytes()
        for name in ("model_config.json", "model.weights.h5", "summary.json")
    }
    other = {**TINY, "model_overrides": {"num_layers": 2, "num_experts": 4}}
    with pytest.raises(
        ValueError, match=r"different config \(.*config\.num_experts.*overrides\.num_experts"
    ):
        run_pretraining(PretrainConfig(**other, output_dir=str(out)))
    with pytest.raises(ValueError, match=r"pretrain_config\.learning_rate"):
        run_pretraining(PretrainConfig(**{**TINY, "learning_rate": 5e-3}, output_dir=str(out)))
    assert {name: (out / name).read_bytes() for name in before} == before
    # What may change on a resume does not count.
    run_pretraining(
        PretrainConfig(**{**TINY, "verbose": 2, "jit_compile": "auto"}, output_dir=str(out))
    )


def test_config_differences_name_nested_and_missing_keys():
    assert backup.config_differences(
        {"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 4}, "e": 5}
    ) == ["b.c", "b.d", "e"]
