"""The Colab notebooks in `notebooks/`, executed end to end on CPU with nbclient.

Each notebook runs top to bottom in a fresh kernel of this interpreter (a kernel spec written
to a temporary directory points at `sys.executable`, so it is the venv's Python whatever kernels
are installed elsewhere). The tiny values below are injected after the notebook's cell tagged
`parameters` (papermill's convention), OUTPUT_DIR is a temporary directory, the working
directory is another one (nothing relies on the repository checkout), and TFMOE_WORDNET_GLOSSES
is unset, so the data bundled with the package is used.
The checks read the JSON each notebook writes to OUTPUT_DIR and the cells' outputs.
"""

import json
import math
import os
import pathlib
import re
import shutil
import sys

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

NOTEBOOKS_DIR = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = ("quickstart.ipynb", "finetune_classification.ipynb", "serve.ipynb")
CELL_TIMEOUT_S = 300
KERNEL_CHECK = (
    "import json, os, sys\n"
    "print('KERNEL=' + json.dumps([sys.prefix, os.environ.get('TFMOE_WORDNET_GLOSSES')]))"
)

QUICKSTART_PARAMS = dict(
    STEPS=4,
    EPOCHS=2,
    BATCH_SIZE=4,
    SEQUENCE_LENGTH=32,
    VALIDATION_BATCHES=2,
    MAX_NEW_TOKENS=4,
    JIT_COMPILE=False,
    EXPORT_JIT_COMPILE=False,
    INSTALL="never",
)
FINETUNE_PARAMS = dict(
    STEPS=4,
    EPOCHS=2,
    BATCH_SIZE=8,
    SEQUENCE_LENGTH=32,
    VALIDATION_EXAMPLES=64,
    NUM_PREDICTIONS=4,
    JIT_COMPILE=False,
    INSTALL="never",
)


def read_notebook(name):
    return nbformat.read(NOTEBOOKS_DIR / name, as_version=4)


def tagged_index(nb, tag):
    indices = [
        i for i, cell in enumerate(nb.cells) if tag in cell.get("metadata", {}).get("tags", [])
    ]
    assert len(indices) == 1, f"expected one cell tagged {tag!r}, found {len(indices)}"
    return indices[0]


def parameter_names(nb):
    source = nb.cells[tagged_index(nb, "parameters")].source
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*=", source, flags=re.M))


def inject_parameters(nb, params):
    """Inserts an `injected-parameters` cell after the `parameters` cell (as papermill does)."""
    unknown = set(params) - parameter_names(nb)
    assert not unknown, f"not parameters of this notebook: {sorted(unknown)}"
    source = "# Parameters injected by tests/test_notebooks.py\n" + "".join(
        f"{name} = {value!r}\n" for name, value in params.items()
    )
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    cell.pop("id", None)
    nb.cells.insert(tagged_index(nb, "parameters") + 1, cell)
    return nb


def run_notebook(name, params, tmp_path, *, upto_tag=None):
    """Executes notebook `name` with `params`; returns the executed notebook."""
    nb = inject_parameters(read_notebook(name), params)
    if upto_tag is not None:
        nb.cells = nb.cells[: tagged_index(nb, upto_tag) + 1]
    nb.cells.append(nbformat.v4.new_code_cell(KERNEL_CHECK))
    for cell in nb.cells:
        cell.pop("id", None)
    kernels = tmp_path / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True, exist_ok=True)
    (kernels / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (tfmoe tests)",
                "language": "python",
            }
        )
    )
    manager = KernelManager(
        kernel_name="python3",
        kernel_spec_manager=KernelSpecManager(
            kernel_dirs=[str(kernels.parent)], ensure_native_kernel=False
        ),
    )
    workdir = tmp_path / "cwd"
    workdir.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
    }
    env.pop("TFMOE_WORDNET_GLOSSES", None)
    env.pop("TPU_NAME", None)
    env.pop("COLAB_TPU_ADDR", None)
    client = nbclient.NotebookClient(
        nb,
        km=manager,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        client.execute(env=env)
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{name} failed:\n{str(error)[-6000:]}")
    kernel = re.search(r"KERNEL=(.*)", stream_text(nb.cells[-1:]))
    assert kernel, "the kernel check cell printed nothing"
    assert json.loads(kernel.group(1)) == [sys.prefix, None], "not this interpreter / environment"
    return nb


def stream_text(cells):
    return "".join(
        out.get("text", "")
        for cell in cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.output_type == "stream"
    )


def outputs_of_type(nb, mime):
    return [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if mime in out.get("data", {})
    ]


def all_finite(values):
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


# Static checks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_valid_parametrised_and_stripped(name):
    nb = read_notebook(name)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), (
        "the first code cell must be the parameters cell"
    )
    assert "install" in code[1].metadata.get("tags", []), (
        "the second code cell must be the install cell"
    )
    tagged_index(nb, "parameters")
    assert {"OUTPUT_DIR", "STEPS", "INSTALL", "TFMOE_SOURCE"} <= parameter_names(nb)
    for cell in code:
        assert cell.get("outputs") == [], f"{name}: committed outputs in cell {cell.source[:60]!r}"
        assert cell.get("execution_count") is None, f"{name}: committed execution count"
    # The parameters cell only assigns literals (papermill and the tests override them).
    compile(code[0].source, "parameters", "exec")
    assert "import " not in code[0].source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_install_cell_dry_run_prints_the_pinned_stack(name, tmp_path):
    """The Colab install commands for this machine's hardware, printed, not run."""
    nb = run_notebook(
        name,
        {"INSTALL": "dry-run", "TFMOE_SOURCE": "/tmp/tfmoe-0.1.0.tar.gz"},
        tmp_path,
        upto_tag="install",
    )
    text = stream_text(nb.cells)
    tensorflow = "tensorflow[and-cuda]" if shutil.which("nvidia-smi") else "tensorflow"
    assert (
        f"$ pip install {tensorflow}>=2.21,<2.22 tensorflow-text>=2.21.1,<2.22 "
        "/tmp/tfmoe-0.1.0.tar.gz"
    ) in text
    tpu_vm = os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio/0")
    assert ("$ pip uninstall -y tensorflow" in text) is tpu_vm
    assert (
        "$ pip install tensorflow-tpu>=2.21,<2.22 -f https://storage.googleapis.com/libtpu-tf-releases"
        in text
    ) is tpu_vm
    assert "install: dry run, nothing installed" in text


def test_install_cell_skips_off_colab(tmp_path):
    nb = run_notebook("quickstart.ipynb", {"INSTALL": "auto"}, tmp_path, upto_tag="install")
    assert "install: skipped (INSTALL='auto', on Colab: False, tfmoe 0." in stream_text(nb.cells)


def test_install_cell_rejects_an_unknown_mode(tmp_path):
    with pytest.raises(pytest.fail.Exception, match="INSTALL must be 'auto', 'never' or 'dry-run'"):
        run_notebook("serve.ipynb", {"INSTALL": "always"}, tmp_path, upto_tag="install")


# End to end ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """Runs quickstart.ipynb once; `serve.ipynb` then serves its SavedModel."""
    tmp_path = tmp_path_factory.mktemp("quickstart")
    output_dir = tmp_path / "out"
    nb = run_notebook(
        "quickstart.ipynb", {**QUICKSTART_PARAMS, "OUTPUT_DIR": str(output_dir)}, tmp_path
    )
    return nb, output_dir


def test_quickstart_trains_routes_generates_and_exports(quickstart):
    nb, output_dir = quickstart
    results = json.loads((output_dir / "quickstart_results.json").read_text())
    text = stream_text(nb.cells)
    # Hardware detection fell back to the CPU, with the settings configure() chose there.
    assert results["kind"] == "cpu"
    assert "cpu (_DefaultDistributionStrategy, 1 replica): global batch 4" in text
    assert "dispatch gather" in results["setup"]
    # Training ran the requested steps with finite losses.
    assert results["steps"] == 4 and len(results["loss"]) == 2 and all_finite(results["loss"])
    assert all_finite([results["validation_loss"], results["validation_perplexity"]])
    assert results["validation_perplexity"] > 1
    # Expert load: one distribution over 8 experts per MoE layer (layers 1 and 3 of 4).
    load = results["expert_load"]
    assert sorted(load) == ["decoder_block_1_feed_forward", "decoder_block_3_feed_forward"]
    for shares in load.values():
        assert len(shares) == 8 and all(0 <= s <= 1 for s in shares)
        assert sum(shares) == pytest.approx(1.0, abs=1e-5)
    assert "decoder_block_1_feed_forward: load x experts" in text
    assert (output_dir / "expert_load.png").stat().st_size > 1000
    assert outputs_of_type(nb, "image/png"), "the expert-load bar chart is not shown"
    # Generation and the SavedModel's answers to raw strings.
    assert isinstance(results["generated"], str) and f"{results['prompt']!r} -> " in text
    saved_model = pathlib.Path(results["saved_model"])
    assert saved_model == output_dir / "saved_models" / "switch_lm" / "1"
    assert (saved_model / "saved_model.pb").is_file() and (saved_model / "variables").is_dir()
    served = results["served"]
    assert len(served["generated_text"]) == 2 and all(
        isinstance(t, str) for t in served["generated_text"]
    )
    assert [len(row) for row in served["generated_token_ids"]] == [4, 4]
    assert all_finite(served["log_likelihood"]) and all(x < 0 for x in served["log_likelihood"])


def test_serve_loads_the_quickstart_savedmodel_without_tfmoe(quickstart, tmp_path):
    _, quickstart_dir = quickstart
    model_dir = quickstart_dir / "saved_models" / "switch_lm"
    output_dir = tmp_path / "out"
    nb = run_notebook(
        "serve.ipynb",
        {
            "MODEL_DIR": str(model_dir),
            "OUTPUT_DIR": str(output_dir),
            "MAX_NEW_TOKENS": 3,
            "INSTALL": "never",
        },
        tmp_path,
    )
    check_serve_results(nb, output_dir, model_dir, trained_here=False)


@pytest.mark.slow  # trains and exports a model itself (python -m tfmoe.demo): about 2 minutes
def test_serve_trains_a_model_when_there_is_none(tmp_path):
    output_dir = tmp_path / "out"
    nb = run_notebook(
        "serve.ipynb",
        {
            "MODEL_DIR": str(tmp_path / "missing"),
            "OUTPUT_DIR": str(output_dir),
            "STEPS": 2,
            "BATCH_SIZE": 4,
            "SEQUENCE_LENGTH": 32,
            "MAX_NEW_TOKENS": 3,
            "INSTALL": "never",
        },
        tmp_path,
    )
    check_serve_results(
        nb, output_dir, output_dir / "saved_models" / "switch_lm", trained_here=True
    )


def check_serve_results(nb, output_dir, model_dir, *, trained_here):
    results = json.loads((output_dir / "serve_results.json").read_text())
    text = stream_text(nb.cells)
    assert pathlib.Path(results["model_dir"]) == model_dir.resolve()
    assert results["version"] == 1 and results["trained_here"] is trained_here
    # Loaded with TensorFlow and TF Text only.
    assert results["imported"]["tfmoe"] is False and results["imported"]["keras_hub"] is False
    assert {"serving_default", "generate", "score"} <= set(results["signatures"])
    # Every signature answered each prompt.
    prompts = results["prompts"]
    assert len(prompts) >= 2
    outputs = results["outputs"]
    assert len(outputs["serving_default"]["generated_text"]) == len(prompts)
    assert all(len(row) <= 3 for row in outputs["generate"]["generated_token_ids"])
    assert all_finite(outputs["score"]["log_likelihood"])
    assert all(n > 0 for n in outputs["score"]["num_tokens"])
    # The REST request body and the response TF Serving would send for it.
    request = json.loads((output_dir / "request.json").read_text())
    assert request == {"instances": prompts}
    response = results["rest_response"]
    assert [p["generated_text"] for p in response["predictions"]] == outputs["serving_default"][
        "generated_text"
    ]
    assert f'-v "{model_dir.resolve()}:/models/switch_lm"' in text and "tensorflow/serving" in text
    assert "curl -d @" in text and ":predict" in text


def test_finetune_classification(tmp_path):
    output_dir = tmp_path / "out"
    nb = run_notebook(
        "finetune_classification.ipynb",
        {**FINETUNE_PARAMS, "OUTPUT_DIR": str(output_dir)},
        tmp_path,
    )
    results = json.loads((output_dir / "finetune_results.json").read_text())
    text = stream_text(nb.cells)
    assert results["kind"] == "cpu" and results["steps"] == 4
    assert results["num_classes"] == 45 and results["bundled_subset"] is True
    assert len(results["loss"]) == 2 and all_finite(results["loss"])
    validation = results["validation"]
    assert 0.0 <= validation["accuracy"] <= 1.0 and math.isfinite(validation["loss"])
    assert validation["examples"] == 64
    assert f"validation accuracy {validation['accuracy']:.3f}" in text
    for shares in results["expert_load"].values():
        assert sum(shares) == pytest.approx(1.0, abs=1e-5)
    predictions = results["predictions"]
    assert len(predictions) == 4
    import tfmoe.data

    for row in predictions:
        assert row["label"] in tfmoe.data.SUPERSENSES and row["predicted"] in tfmoe.data.SUPERSENSES
        assert 0.0 <= row["probability"] <= 1.0 and row["text"]
