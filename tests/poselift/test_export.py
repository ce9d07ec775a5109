"""`poselift export --onnx`: a file onnxruntime loads, tied to its checkpoint, equal to eager torch."""

import contextlib
import io

import numpy as np
import pytest

from poselift import export, load_lifter
from poselift.cli import main
from poselift.export import INPUT_NAMES, OUTPUT_NAME, TOLERANCE_MM, cached_export
from poselift.model import LifterConfig, Seq2SeqLifter
from poselift.runtimes import onnx_available
from tests.poselift.test_runtimes import val_windows

pytestmark = pytest.mark.skipif(not onnx_available(), reason="onnxruntime/onnxscript not installed")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The framewise checkpoint exported by the CLI: (path, the CLI's stdout)."""
    path = tmp_path_factory.mktemp("onnx") / "framewise.onnx"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["export", "--onnx", str(path), "--checkpoint", "framewise", "--windows", "64"]) == 0
    return path, out.getvalue()


def test_export_cli_reports_the_difference_from_torch(exported):
    path, printed = exported
    assert f"wrote {path}" in printed and "(framewise, window 1)" in printed
    assert "max |onnxruntime - torch| over 64 random windows" in printed and "(ok;" in printed


def test_exported_file_loads_in_onnxruntime_with_a_dynamic_batch(exported):
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported[0]), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    assert [i.name for i in inputs] == list(INPUT_NAMES)
    assert isinstance(inputs[0].shape[0], str) and inputs[0].shape[1:] == [1, 17, 2]
    assert [o.name for o in session.get_outputs()] == [OUTPUT_NAME]
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["checkpoint_id"] == load_lifter("framewise", "cpu", backend="torch").checkpoint_id


def test_lifter_from_the_exported_file_matches_torch(exported):
    eager = load_lifter("framewise", "cpu", backend="torch")
    from_file = load_lifter("framewise", "cpu", backend="onnx", onnx_path=exported[0])
    assert from_file.backend == "onnx"
    kp, sc = val_windows(1)
    for batch in (1, 37):
        np.testing.assert_allclose(
            from_file.lift_windows(kp[:batch], sc[:batch]),
            eager.lift_windows(kp[:batch], sc[:batch]),
            rtol=0,
            atol=TOLERANCE_MM,
        )


def test_onnx_file_of_other_weights_is_refused(exported):
    with pytest.raises(ValueError, match="was exported from checkpoint"):
        load_lifter("seq2seq", "cpu", onnx_path=exported[0])


def test_export_cli_names_a_missing_checkpoint(tmp_path, capsys):
    assert main(["export", "--onnx", str(tmp_path / "x.onnx"), "--checkpoint", str(tmp_path / "nope")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_export_cli_names_an_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert main(["export", "--onnx", str(blocker / "x.onnx"), "--checkpoint", "framewise"]) == 2
    assert "cannot write" in capsys.readouterr().err


@pytest.mark.slow  # two ONNX exports of a seq2seq (its unrolled LSTM exports slowly)
def test_cached_export_is_reused_only_for_the_same_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("POSELIFT_CACHE_DIR", str(tmp_path))
    model = Seq2SeqLifter(LifterConfig(hidden_size=8, dropout=0.0)).eval()
    first = cached_export(model, "0123456789ab")
    assert [p.name.startswith("0123456789ab-") for p in (tmp_path / "onnx").iterdir()] == [True]
    monkeypatch.setattr(export, "export_onnx", lambda *a: pytest.fail("exported again"))
    assert cached_export(model, "0123456789ab") == first  # read back, not re-exported
    monkeypatch.undo()
    cached_export(model, "unsaved")
    assert len(list((tmp_path / "onnx").iterdir())) == 1  # an unsaved model is never cached
