"""Data-parallel `model.fit` of a tiny switch LM: two real worker processes, and mirrored CPUs.

Both must reproduce the single-process run with the same global batch.
"""

import json
import os
import subprocess
import sys

import distributed_fit
import numpy as np
import pytest
import tensorflow as tf

from tfmoe.distribute import free_ports, tf_config

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


@pytest.fixture(scope="module")
def single_process_run():
    model, losses = distributed_fit.train(tf.distribute.get_strategy())
    return model.get_weights(), losses


def _assert_same_training(reference, weights, losses, label):
    ref_weights, ref_losses = reference
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-4, err_msg=f"{label}: per-step losses")
    assert losses[-1] < losses[0], f"{label}: the loss did not go down: {losses}"
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(weights, ref_weights))
    assert worst < 2e-4, f"{label}: weights differ from the single-process run by {worst:.2e}"


def test_mirrored_two_cpus_matches_single_process(single_process_run, mirrored_cpus):
    strategy = mirrored_cpus
    model, losses = distributed_fit.train(strategy)
    # Every replica holds the same values.
    for variable in model.trainable_variables:
        values = [v.numpy() for v in strategy.experimental_local_results(variable.value)]
        assert all(np.array_equal(values[0], v) for v in values[1:]), variable.path
    _assert_same_training(single_process_run, model.get_weights(), losses, "mirrored")


def test_two_worker_processes_match_single_process(single_process_run, tmp_path):
    ports = free_ports(2)
    workers = [f"localhost:{port}" for port in ports]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, HERE]), CUDA_VISIBLE_DEVICES="")
    processes = []
    for index in range(2):
        worker_env = dict(env, TF_CONFIG=tf_config(workers, index))
        log = open(tmp_path / f"worker{index}.log", "w")
        processes.append(
            (
                subprocess.Popen(
                    [
                        sys.executable,
                        os.path.join(HERE, "distributed_fit.py"),
                        str(tmp_path / f"worker{index}.json"),
                    ],
                    env=worker_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=str(tmp_path),
                ),
                log,
            )
        )
    try:
        for process, _ in processes:
            process.wait(timeout=240)
    finally:
        for process, log in processes:
            if process.poll() is None:
                process.kill()
            log.close()
    for index, (process, _) in enumerate(processes):
        tail = (tmp_path / f"worker{index}.log").read_text()[-3000:]
        assert process.returncode == 0, f"worker {index} failed:\n{tail}"

    results = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    weights = [np.load(tmp_path / f"worker{i}.npz") for i in range(2)]
    weights = [[w[f"w{k}"] for k in range(len(w.files))] for w in weights]
    for index, result in enumerate(results):
        assert result["task"] == ["worker", index]
        assert result["kind"] == "multi_worker" and result["replicas"] == 2
    # Identical across workers, bit for bit.
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    assert results[0]["losses"] == results[1]["losses"]
    _assert_same_training(single_process_run, weights[0], results[0]["losses"], "multi-worker")
