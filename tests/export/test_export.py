"""Export on a real tiny run: SavedModel signature and equality, TFLite types and runtimes,
warmup file, models.config, atomic publishing, manifest checksums, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from fmnist import dataset
from fmnist.cli import main
from fmnist.contract import FASHION_MNIST
from fmnist.edge.classifier import Classifier
from fmnist.edge.runtime import select_runtime
from fmnist.errors import ManifestError, UserError
from fmnist.export import saved_model, tflite
from fmnist.export.config import ExportConfig
from fmnist.export.export import export_run
from fmnist.export.publish import STAGING_PREFIX
from fmnist.manifest import load_manifest
from fmnist.parity import Tolerance
from fmnist.preprocessing import predict_probabilities
from fmnist.run_dir import RunDir

TFLITE_RUNTIME_PYTHON = "FMNIST_TFLITE_RUNTIME_PYTHON"
# Per-class recall limit for re-exports of the tiny test CNN (as tests/conftest.py's fixture).
TINY_CLASS_DROP = 5.0


def _models_config(base: Path) -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((base / "models.config").read_text(), config)
    return config


def _entries(base: Path) -> list[str]:
    return sorted(p.relative_to(base).as_posix() for p in base.rglob("*"))


def test_bundle_layout_is_what_tf_serving_loads(exported_bundle: Path) -> None:
    assert exported_bundle.name == "1" and exported_bundle.parent.name == "fashion_mnist"
    assert (exported_bundle / "saved_model.pb").is_file()
    assert (exported_bundle / "variables" / "variables.index").is_file()
    names = {p.name for p in exported_bundle.parent.iterdir()}
    assert names == {"1"}, f"staging leftovers next to the version: {names}"


def test_signature_names_dtypes_and_shapes(exported_bundle: Path) -> None:
    loaded = tf.saved_model.load(str(exported_bundle))
    assert list(loaded.signatures) == ["serving_default"]
    serve = loaded.signatures["serving_default"]
    _, inputs = serve.structured_input_signature
    assert {k: (v.dtype, v.shape.as_list()) for k, v in inputs.items()} == {
        "images": (tf.uint8, [None, 28, 28, 1])
    }
    outputs = {k: (v.dtype, v.shape.as_list()) for k, v in serve.structured_outputs.items()}
    assert outputs == {"probabilities": (tf.float32, [None, 10]), "class_ids": (tf.int64, [None])}


def test_saved_model_equals_keras_on_the_test_set(
    exported_bundle: Path, tiny_run: Path, data_dir: Path
) -> None:
    test = dataset.load_test(data_dir)
    keras_probs = predict_probabilities(RunDir(tiny_run).load_model(), test.images)
    served = saved_model.signature_outputs(exported_bundle, test.images[..., None])
    np.testing.assert_allclose(served["probabilities"], keras_probs, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(served["class_ids"], keras_probs.argmax(1))
    reference = load_manifest(exported_bundle).load_reference()
    np.testing.assert_allclose(reference, keras_probs, atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def flip_average_bundle(
    tiny_run: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """`tiny_run` exported with `fmnist export --flip-average` (test-time flip averaging);
    also with `--no-bias-correction`, so one export checks that option too."""
    base = tmp_path_factory.mktemp("flip") / "models"
    argv = ["export", str(tiny_run), "--base-path", str(base), "--data-dir", str(data_dir)]
    loose = ["--min-agreement", "0.98", "--max-class-recall-drop", str(TINY_CLASS_DROP)]
    options = ["--flip-average", "--no-bias-correction", "--calibration-size", "200"]
    assert main([*argv, *options, *loose]) == 0
    return base / "fashion_mnist" / "1"


def test_flip_average_reference_is_the_mean_over_image_and_mirror(
    flip_average_bundle: Path, tiny_run: Path, data_dir: Path
) -> None:
    test = dataset.load_test(data_dir)
    model = RunDir(tiny_run).load_model()
    expected = (
        predict_probabilities(model, test.images)
        + predict_probabilities(model, test.images[:, :, ::-1])
    ) / 2
    manifest = load_manifest(flip_average_bundle)
    assert manifest.flip_average is True
    np.testing.assert_allclose(manifest.load_reference(), expected, atol=1e-6, rtol=0)
    accuracy = (expected.argmax(1) == test.labels).mean()
    assert manifest.float_metrics["accuracy"] == pytest.approx(accuracy)


def test_no_bias_correction_is_recorded_in_the_manifest(flip_average_bundle: Path) -> None:
    assert load_manifest(flip_average_bundle).data["calibration"]["bias_correction"] is False


# int8: the two branches' activations are calibrated apart (on images and on mirror images),
# so their scores may differ by a few output steps (~0.004 each).
@pytest.mark.parametrize(
    ("kind", "atol"), [("saved_model", 1e-5), ("float32", 1e-5), ("int8", 0.02)]
)
def test_flip_average_models_answer_an_image_and_its_mirror_alike(
    flip_average_bundle: Path, exported_bundle: Path, data_dir: Path, kind: str, atol: float
) -> None:
    images = dataset.load_test(data_dir).images[:256, ..., None]
    mirrored = np.ascontiguousarray(images[:, :, ::-1])

    def predict(bundle: Path, batch: np.ndarray) -> np.ndarray:
        if kind == "saved_model":
            return saved_model.signature_outputs(bundle, batch)["probabilities"]
        model = Classifier(load_manifest(bundle).tflite(kind).path, runtime=select_runtime())
        return model.predict_proba(batch, batch_size=256)

    flipped = predict(flip_average_bundle, images)
    np.testing.assert_allclose(flipped, predict(flip_average_bundle, mirrored), atol=atol)
    # The plain bundle is not mirror-symmetric: the check above can tell the two apart.
    plain_gap = np.abs(predict(exported_bundle, images) - predict(exported_bundle, mirrored))
    assert plain_gap.max() > 5 * atol


def test_int8_model_is_full_integer_with_recorded_quantization(exported_bundle: Path) -> None:
    manifest = load_manifest(exported_bundle)
    int8 = manifest.tflite("int8")
    runtime = select_runtime()
    interpreter = runtime.interpreter_class(model_path=str(int8.path))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.int8
    assert inp["quantization"] == pytest.approx((1 / 255, 0))
    assert (int8.input.scale, int8.input.zero_point) == pytest.approx(inp["quantization"])
    assert (int8.output.scale, int8.output.zero_point) == pytest.approx(out["quantization"])
    float_tensors = [
        t["name"]
        for t in interpreter.get_tensor_details()
        if t["dtype"] == np.float32 and t["index"] not in (inp["index"], out["index"])
    ]
    assert not float_tensors, f"float tensors in the int8 model: {float_tensors}"
    assert manifest.data["calibration"]["equalize_alpha"] == 0.5  # export's default
    assert manifest.data["calibration"]["bias_correction"] is True  # export's default
    # ~1/4 of float32 plus a fixed overhead that weighs more in this tiny model; the 30%
    # target on the default model is measured by benchmarks/bench_export.py.
    assert manifest.tflite("int8").bytes <= 0.35 * manifest.tflite("float32").bytes


def test_both_tflite_models_run_in_litert_and_agree_with_the_reference(
    exported_bundle: Path, data_dir: Path
) -> None:
    manifest = load_manifest(exported_bundle)
    images = dataset.load_test(data_dir).images[:500]
    reference = manifest.load_reference()[:500]
    for kind, atol in (("float32", 1e-4), ("int8", 0.1)):
        classifier = Classifier(manifest.tflite(kind).path, runtime=select_runtime("litert"))
        probs = classifier.predict_proba(images)
        np.testing.assert_allclose(probs, reference, atol=atol, rtol=0, err_msg=kind)
        assert manifest.tflite(kind).parity["passed"] is True


def test_residual_model_converts_to_full_integer_int8_that_litert_runs(
    data_dir: Path, tmp_path: Path, residual_model: keras.Model
) -> None:
    model = residual_model
    images = dataset.load_test(data_dir).images[:256, ..., None]
    path = tmp_path / "model_int8.tflite"
    path.write_bytes(tflite.convert_int8(model, images[:32], FASHION_MNIST))
    classifier = Classifier(path, runtime=select_runtime("litert"))
    interpreter = classifier.interpreter
    assert "ADD" in {op["op_name"] for op in interpreter._get_ops_details()}
    assert not [t for t in interpreter.get_tensor_details() if t["dtype"] == np.float32]
    expected = np.asarray(model(images / 255.0, training=False))
    # A batch as large as the parity checks use: XNNPACK prepares each batch size anew.
    predicted = classifier.predict_proba(images, batch_size=256)
    assert (predicted.argmax(1) == expected.argmax(1)).mean() >= 0.9


@pytest.mark.parametrize(
    ("variant", "activation_dtype"), [("dynamic-range", np.float32), ("16x8", np.int16)]
)
def test_benchmark_variants_quantize_weights_and_keep_their_activation_type(
    tiny_run: Path, data_dir: Path, tmp_path: Path, variant: str, activation_dtype: type
) -> None:
    model = RunDir(tiny_run).load_model()
    images = dataset.load_test(data_dir).images[:64, ..., None]
    path = tmp_path / "model.tflite"
    path.write_bytes(tflite.convert_variant(model, images[:16], FASHION_MNIST, variant))
    classifier = Classifier(path)
    interpreter = classifier.interpreter
    convolutions = [op for op in interpreter._get_ops_details() if op["op_name"] == "CONV_2D"]
    assert convolutions
    # (input, weights, bias) -> output. Dynamic-range conversion leaves weight tensors
    # under 1,024 values in float, as the tiny model's first convolution.
    weights = [interpreter._get_tensor_details(op["inputs"][1], 0) for op in convolutions]
    outputs = [interpreter._get_tensor_details(op["outputs"][0], 0) for op in convolutions]
    assert np.int8 in {w["dtype"] for w in weights}
    assert {o["dtype"] for o in outputs} == {activation_dtype}
    predicted = classifier.predict_proba(images)
    expected = predict_probabilities(model, images)
    assert (predicted.argmax(1) == expected.argmax(1)).mean() >= 0.95


def test_an_unknown_variant_is_refused(tiny_run: Path) -> None:
    model = RunDir(tiny_run).load_model()
    with pytest.raises(ValueError, match="unknown variant"):
        tflite.convert_variant(model, np.zeros((1, 28, 28, 1), np.uint8), FASHION_MNIST, "int4")


@pytest.mark.parametrize("bundle", ["exported_bundle", "flip_average_bundle"])
def test_int8_model_runs_in_tflite_runtime_214_with_numpy_1(
    bundle: str, request: pytest.FixtureRequest
) -> None:
    python = os.environ.get(TFLITE_RUNTIME_PYTHON)
    if not python:
        pytest.skip(f"set {TFLITE_RUNTIME_PYTHON} to a tflite-runtime 2.14 + numpy<2 python")
    script = (
        "import json, sys, numpy as np, tflite_runtime\n"
        "from tflite_runtime.interpreter import Interpreter\n"
        "it = Interpreter(model_path=sys.argv[1]); it.allocate_tensors()\n"
        "i, o = it.get_input_details()[0], it.get_output_details()[0]\n"
        "it.set_tensor(i['index'], np.full(i['shape'], 128, np.uint8)); it.invoke()\n"
        "print(json.dumps([tflite_runtime.__version__, np.__version__,"
        " it.get_tensor(o['index']).tolist()]))\n"
    )
    model = request.getfixturevalue(bundle) / tflite.INT8_FILE
    done = subprocess.run(
        [python, "-c", script, str(model)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    version, numpy_version, scores = json.loads(done.stdout.strip().splitlines()[-1])
    assert version.startswith("2.14") and numpy_version.startswith("1.")
    litert = Classifier(model, runtime=select_runtime("litert"))
    expected = litert.invoke(np.full((1, 28, 28, 1), 128, np.uint8))
    np.testing.assert_allclose(np.array(scores), expected, atol=2)  # int8 steps, not exact


def test_warmup_file_holds_real_predict_requests(exported_bundle: Path) -> None:
    logs = saved_model.read_warmup(exported_bundle / saved_model.WARMUP_FILE)
    assert [log.WhichOneof("log_type") for log in logs] == ["predict_log"] * 3
    shapes = []
    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.name == "fashion_mnist"
        assert request.model_spec.signature_name == "serving_default"
        images = tf.make_ndarray(request.inputs["images"])
        assert images.dtype == np.uint8 and images.any()
        shapes.append(images.shape)
    assert shapes == [(1, 28, 28, 1), (8, 28, 28, 1), (64, 28, 28, 1)]


def test_models_config_parses_with_the_official_protos(exported_bundle: Path) -> None:
    config = _models_config(exported_bundle.parent.parent)
    (model,) = config.model_config_list.config
    assert model.name == "fashion_mnist" and model.model_platform == "tensorflow"
    assert model.base_path == str(exported_bundle.parent.resolve())
    assert model.model_version_policy.latest.num_versions == 2
    assert dict(model.version_labels) == {"stable": 1}


def test_manifest_checksums_verify_and_tampering_is_detected(
    exported_bundle: Path, tmp_path: Path
) -> None:
    manifest = load_manifest(exported_bundle)
    manifest.verify()
    assert {"saved_model.pb", tflite.INT8_FILE, "reference_outputs.npz"} <= set(manifest.files)
    assert manifest.tflite("int8").input.scale == pytest.approx(1 / 255)
    assert manifest.data["producer"]["tensorflow"] == tf.__version__
    copy = tmp_path / "1"
    shutil.copytree(exported_bundle, copy)
    variables = copy / "variables" / "variables.data-00000-of-00001"
    data = bytearray(variables.read_bytes())
    data[len(data) // 2] ^= 0xFF
    variables.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"variables\.data.*SHA-256"):
        load_manifest(copy).verify()


@pytest.fixture
def copied_base(exported_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the exported base path (version 1 and models.config)."""
    base = tmp_path / "models"
    shutil.copytree(exported_bundle.parent.parent, base)
    return base


def test_next_export_takes_the_next_version_and_moves_the_label(
    tiny_run: Path, data_dir: Path, copied_base: Path
) -> None:
    config = ExportConfig(
        copied_base,
        data_dir=data_dir,
        label="stable",
        calibration_size=50,
        tolerance=Tolerance(max_class_recall_drop_pp=TINY_CLASS_DROP),
    )
    result = export_run(tiny_run, config)
    assert result.version == 2 and result.bundle_dir == copied_base / "fashion_mnist" / "2"
    assert load_manifest(result.bundle_dir).model_version == 2
    (model,) = _models_config(copied_base).model_config_list.config
    assert dict(model.version_labels) == {"stable": 2}
    assert model.base_path == str((copied_base / "fashion_mnist").resolve())


def test_failure_part_way_leaves_nothing_behind(
    tiny_run: Path, data_dir: Path, copied_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _entries(copied_base)
    seen: list[str] = []

    def fail(*args, **kwargs):  # after the SavedModel was written into the staging directory
        seen.extend(_entries(copied_base))
        raise KeyboardInterrupt

    monkeypatch.setattr(tflite, "convert_int8", fail)
    with pytest.raises(KeyboardInterrupt):
        export_run(tiny_run, ExportConfig(copied_base, data_dir=data_dir))
    assert any(STAGING_PREFIX in entry and "saved_model.pb" in entry for entry in seen)
    assert _entries(copied_base) == before


def test_fresh_base_path_is_removed_again_when_export_fails(
    tiny_run: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tflite, "convert_float32", lambda *args: b"not a model")
    base = tmp_path / "new-base"
    with pytest.raises(UserError, match="not a TFLite model"):
        export_run(tiny_run, ExportConfig(base, data_dir=data_dir))
    assert not base.exists()


def test_a_converted_model_that_aborts_tflite_is_refused_not_a_crash(
    tiny_run: Path, data_dir: Path, tmp_path: Path, aborting_tflite: Path
) -> None:
    # In a child process: without the probe, loading this model aborts the exporting process.
    base = tmp_path / "models"
    script = (
        "import sys; from pathlib import Path; from fmnist.cli import main; "
        "from fmnist.export import tflite; "
        f"tflite.convert_int8 = lambda *a, **k: Path({str(aborting_tflite / 'model.tflite')!r})"
        ".read_bytes(); "
        f"sys.exit(main(['export', {str(tiny_run)!r}, '--base-path', {str(base)!r}, "
        f"'--data-dir', {str(data_dir)!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-2000:]
    err = done.stderr.strip().splitlines()
    assert (
        "Traceback" not in done.stderr
        and "not published: the converted int8 TFLite model: the " in err[-1]
    ), err[-5:]
    assert err[-1].endswith("interpreter killed the process that loaded it (SIGABRT)")
    assert not base.exists()


def test_int8_outside_tolerance_is_refused_with_a_per_layer_report(
    tiny_run: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    base = tmp_path / "models"
    argv = ["export", str(run), "--base-path", str(base), "--data-dir", str(data_dir)]
    code = main([*argv, "--min-agreement", "1.0", "--max-accuracy-drop", "0"])
    out, err = capsys.readouterr()
    assert code == 1, err
    assert "not published: int8 TFLite outside tolerance" in err
    assert "top-1 agreement" in out  # the numbers are printed
    assert not base.exists() or not any(base.rglob("*.pb"))
    report = run / "quantization_debug" / "quantization_report.md"
    assert report.is_file() and "RMSE/scale" in report.read_text()
    assert "conv" in (run / "quantization_debug" / "layer_statistics.csv").read_text().lower()


def _fails_cleanly(argv: list[str], capsys: pytest.CaptureFixture[str], match: str) -> None:
    code = main(argv)
    _, err = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert match in err, err


def test_bad_input_is_one_clear_line_and_leaves_nothing(
    tiny_run: Path, data_dir: Path, copied_base: Path, tmp_path: Path, capsys
) -> None:
    before = _entries(copied_base)
    empty_run = tmp_path / "empty-run"
    empty_run.mkdir()
    base = ["--base-path", str(copied_base), "--data-dir", str(data_dir)]
    _fails_cleanly(["export", str(empty_run), *base], capsys, "no model.keras")
    _fails_cleanly(["export", str(tmp_path / "nope"), *base], capsys, "no such run directory")
    _fails_cleanly(["export", str(tiny_run), *base, "--version", "1"], capsys, "already exists")
    _fails_cleanly(["export", str(tiny_run), *base, "--version", "0"], capsys, "positive")
    _fails_cleanly(["export", str(tiny_run), *base, "--label", "1x"], capsys, "--label")
    _fails_cleanly(
        ["export", str(tiny_run), *base, "--equalize-alpha", "2"], capsys, "--equalize-alpha"
    )
    corrupt = tmp_path / "corrupt-run"
    shutil.copytree(tiny_run, corrupt)
    (corrupt / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    _fails_cleanly(["export", str(corrupt), *base], capsys, "cannot load the Keras model")
    assert _entries(copied_base) == before
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _fails_cleanly(
        ["export", str(tiny_run), "--base-path", str(blocker / "models")],
        capsys,
        "not a directory",
    )


def test_cli_publishes_and_reports(
    tiny_run: Path, data_dir: Path, copied_base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["export", str(tiny_run), "--base-path", str(copied_base), "--data-dir", str(data_dir)]
    flags = ["--version", "7", "--serving-base-path", "/models", "--label", "canary"]
    flags += ["--num-versions", "1"]
    flags += ["--max-class-recall-drop", str(TINY_CLASS_DROP)]
    code = main([*argv, *flags, "--min-agreement", "0.98"])  # a tiny model: looser limits
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"published {copied_base / 'fashion_mnist' / '7'}" in out
    (model,) = _models_config(copied_base).model_config_list.config
    assert model.base_path == "/models/fashion_mnist"
    assert dict(model.version_labels) == {"stable": 1, "canary": 7}
    # latest 1 would unload the labelled version 1: the policy lists what must stay loaded
    assert list(model.model_version_policy.specific.versions) == [1, 7]
    load_manifest(copied_base / "fashion_mnist" / "7").verify()


def test_label_names_the_exported_version_and_versions_compare_as_numbers(
    tiny_run: Path, data_dir: Path, copied_base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = copied_base / "fashion_mnist"
    shutil.copytree(model_dir / "1", model_dir / "5")
    shutil.copytree(model_dir / "1", model_dir / "007")  # TF Serving reads this as version 7
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    abandoned = model_dir / f"{STAGING_PREFIX}9-{dead.pid}"  # an export that was killed
    abandoned.mkdir()
    argv = ["export", str(tiny_run), "--base-path", str(copied_base), "--data-dir", str(data_dir)]
    _fails_cleanly([*argv, "--version", "7"], capsys, "already exists")

    loose = ["--min-agreement", "0.98", "--max-class-recall-drop", str(TINY_CLASS_DROP)]
    assert main([*argv, "--version", "3", "--label", "stable", *loose]) == 0
    capsys.readouterr()
    (model,) = _models_config(copied_base).model_config_list.config
    assert dict(model.version_labels) == {"stable": 3}  # not the highest version, 7
    assert list(model.model_version_policy.specific.versions) == [3, 5, 7]
    assert not abandoned.exists()

    (copied_base / "models.config").write_text("model_config_list { config { nme: 'x' } }")
    before = _entries(copied_base)
    _fails_cleanly(argv, capsys, "models.config: not a valid TF Serving model config")
    assert _entries(copied_base) == before  # refused before publishing version 8


def test_export_is_importable_without_side_effects() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import fmnist.export.cli, sys; print('tensorflow' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "False", "fmnist --help must not import TensorFlow"


def test_version_dir_holds_model_tflite_for_tf_serving(exported_bundle: Path) -> None:
    # TF Serving's --prefer_tflite_model serves <version>/model.tflite: our int8 model,
    # answering the SavedModel's outputs.
    served = exported_bundle / tflite.SERVING_FILE
    manifest = load_manifest(exported_bundle)
    assert manifest.data["tflite"]["int8"]["serving_file"] == tflite.SERVING_FILE
    assert manifest.verify_file(tflite.SERVING_FILE) == served
    # The SavedModel's input, so its requests and warm-up records serve both.
    assert manifest.tflite("int8").input.shape == (-1, 28, 28, 1)


def test_manifest_records_the_contract_and_version_1_still_loads(
    exported_bundle: Path, tmp_path: Path
) -> None:
    manifest = load_manifest(exported_bundle)
    assert manifest.data["schema_version"] == 2
    assert manifest.data["input"] == FASHION_MNIST.to_dict()
    assert manifest.contract == FASHION_MNIST
    assert manifest.data["source"]["kind"] == "run"
    old = {k: v for k, v in manifest.data.items() if k not in ("input", "source")}
    old["schema_version"] = 1
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    assert load_manifest(tmp_path).contract.shape == (28, 28, 1)
