"""`tfmoe.distribute.configure` and the cluster helpers."""

import json

import keras
import pytest
import tensorflow as tf

from tfmoe.distribute import (
    StrategyError,
    configure,
    is_chief,
    resolve_strategy,
    strategy_kind,
    task_info,
    tf_config,
    worker_output_dir,
)


def test_configure_on_cpu_sets_batch_precision_and_steps():
    setup = configure("cpu", per_replica_batch_size=6, mixed_precision="mixed_bfloat16")
    assert (setup.kind, setup.num_replicas, setup.global_batch_size) == ("cpu", 1, 6)
    assert setup.steps_per_execution == 1 and setup.dispatch == "gather" and setup.jit_compile
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert "global batch 6" in setup.describe()
    assert configure("auto").mixed_precision == "float32"  # no TPU, no GPU here


def test_configure_mirrored_cpus_scales_the_global_batch(mirrored_cpus):
    setup = configure(mirrored_cpus, per_replica_batch_size=4)
    assert (setup.kind, setup.num_replicas, setup.global_batch_size) == ("mirrored", 2, 8)
    assert setup.steps_per_execution == 1 and not setup.jit_compile
    assert configure(setup.strategy, global_batch_size=10).per_replica_batch_size == 5


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"global_batch_size": 7}, "global_batch_size`=7 is not divisible by the 2 replicas"),
        ({"global_batch_size": 8, "per_replica_batch_size": 4}, "not both"),
        ({"per_replica_batch_size": 0}, "per_replica_batch_size` must be a positive integer"),
        ({"mixed_precision": "fp8"}, "mixed_precision` must be one of"),
        ({"steps_per_execution": 4}, "steps_per_execution`=4 fails"),
        ({"steps_per_execution": -1}, "steps_per_execution` must be a positive integer"),
    ],
)
def test_configure_rejects_bad_arguments(kwargs, message, mirrored_cpus):
    with pytest.raises(ValueError, match=message):
        configure(mirrored_cpus, **kwargs)


def test_strategy_kinds():
    assert strategy_kind(tf.distribute.get_strategy()) == "cpu"
    assert strategy_kind(tf.distribute.OneDeviceStrategy("/cpu:0")) == "cpu"


def test_tf_config_and_chief(monkeypatch, tmp_path):
    config = json.loads(tf_config(["localhost:1111", "localhost:2222"], 1))
    assert config == {
        "cluster": {"worker": ["localhost:1111", "localhost:2222"]},
        "task": {"type": "worker", "index": 1},
    }
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert (
        is_chief()
        and task_info() == (None, 0)
        and worker_output_dir(str(tmp_path)) == str(tmp_path)
    )
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert not is_chief() and task_info() == ("worker", 1)
    assert worker_output_dir(str(tmp_path)) == str(tmp_path / "workers" / "worker_1")
    monkeypatch.setenv("TF_CONFIG", tf_config(["localhost:1111", "localhost:2222"], 0))
    assert is_chief()
    with pytest.raises(ValueError, match="host:port"):
        tf_config(["localhost"], 0)
    with pytest.raises(ValueError, match="index"):
        tf_config(["a:1"], 3)
    for bad, message in (("{not json", "not valid JSON"), ("[1, 2]", "JSON object")):
        monkeypatch.setenv("TF_CONFIG", bad)
        with pytest.raises(ValueError, match=message):
            is_chief()
        with pytest.raises(ValueError, match=message):
            task_info()


def test_multi_worker_after_start_up_is_a_clear_error(monkeypatch):
    # This process has long initialised TensorFlow: collective ops can no longer be set up.
    monkeypatch.setenv("TF_CONFIG", tf_config(["localhost:1111", "localhost:2222"], 0))
    with pytest.raises(StrategyError, match="before any other TensorFlow call"):
        resolve_strategy("auto")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(StrategyError, match="TF_CONFIG is not valid JSON"):
        resolve_strategy("auto")


def test_xla_is_off_on_cpu_for_models_that_draw_random_numbers():
    from tfmoe.models import SwitchDecoderLM

    setup = configure("cpu")
    small = dict(
        vocabulary_size=64,
        hidden_dim=16,
        num_heads=2,
        key_value_dim=8,
        intermediate_dim=32,
        num_layers=2,
    )
    assert setup.jit_compile_for(SwitchDecoderLM.from_preset("switch_lm_tiny_8", **small))
    assert not setup.jit_compile_for(
        SwitchDecoderLM.from_preset("switch_lm_tiny_8", dropout=0.1, **small)
    )
    assert not setup.jit_compile_for(
        SwitchDecoderLM.from_preset("switch_lm_tiny_8", jitter_noise=0.01, **small)
    )


def test_tpu_vm_devices_select_the_local_tpu_address(monkeypatch):
    from tfmoe.distribute import strategy as strategy_module

    monkeypatch.delenv("TPU_NAME", raising=False)
    monkeypatch.delenv("COLAB_TPU_ADDR", raising=False)
    monkeypatch.setattr(strategy_module.os.path, "exists", lambda path: path == "/dev/accel0")
    assert strategy_module._default_tpu_address() == "local"
    monkeypatch.setenv("TPU_NAME", "my-tpu")
    assert strategy_module._default_tpu_address() == ""
