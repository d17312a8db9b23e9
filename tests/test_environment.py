"""policyport in the user's environment: the Python and JAX they train with.

Runs on every leg of CI (Python 3.13 with the main pins, and the compatibility leg's other
ends of the supported range: `scripts/compat-leg`), so each assertion here is checked
against the JAX and TensorFlow actually installed, not only against stand-ins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import pytest

import policyport
from conftest import make_policy
from policyport import UnsupportedError
from policyport._errors import MissingDependencyError
from policyport.formats import FORMATS, _onnx, _toolchain

ROOT = Path(__file__).resolve().parents[1]
GRIDWORLD = ROOT / "examples" / "gridworld" / "policy.eqx"  # self-describing: no lerax needed
EXPORT_POLICY = Path(sys.executable).with_name("export-policy")
TENSORFLOW_FORMATS = ("savedmodel", "tflite")


def _python(code: str, env: dict[str, str] | None = None) -> dict:
    """Run `code` in a fresh interpreter (its own JAX configuration); return the JSON it
    prints last."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT / "tests",
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_the_onnx_path_imports_no_optional_toolchain():
    # The core install is what the ONNX path needs: importing policyport and exporting a
    # policy to onnx (and ort) must not pull in jax2onnx, flax, TensorFlow or Brax.
    loaded = _python(
        """
        import json, sys, tempfile
        from pathlib import Path
        import policyport
        from conftest import make_policy
        out = Path(tempfile.mkdtemp())
        for fmt in ("onnx", "ort"):
            [result] = policyport.export(make_policy("Discrete"), fmt, out / f"p.{fmt}")
            assert result.report.passed
        heavy = ("jax2onnx", "flax", "tensorflow", "brax", "lerax", "orbax", "optax")
        print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(heavy))))
        """
    )
    assert loaded == []


@pytest.mark.parametrize("missing", ["jax2onnx", "jax"])
def test_a_policy_needing_the_fallback_says_what_to_install(tmp_path, monkeypatch, missing):
    # An exact GELU uses `erf`, which only the jax2onnx fallback lowers. Without the extra
    # (or with a JAX the fallback cannot run on), the export stops naming the primitive and
    # what to install, and writes nothing.
    import equinox as eqx

    policy = make_policy("Discrete")
    gelu = eqx.nn.Lambda(lambda x: jax.nn.gelu(x, approximate=False))
    policy = eqx.tree_at(lambda p: p.encoder.activation, policy, gelu.fn)
    versions = {"jax2onnx": None} if missing == "jax2onnx" else {"jax": "0.12.0.1"}
    real = _toolchain.installed_version
    monkeypatch.setattr(
        _onnx, "installed_version", lambda name: versions.get(name, real(name) or "0.17.1")
    )
    error = MissingDependencyError if missing == "jax2onnx" else UnsupportedError
    with pytest.raises(error) as caught:
        policyport.export(policy, "onnx", tmp_path / "gelu.onnx")
    message = str(caught.value)
    assert "lacks primitive 'erf" in message  # erf or erfc, as JAX writes the GELU
    assert "policyport[fallback]" in message
    assert "--format stablehlo" in message
    if missing == "jax":
        assert "jax 0.12.0.1" in message
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("format", TENSORFLOW_FORMATS)
def test_tensorflow_formats_are_refused_before_tracing_when_jax_cannot_be_asked(
    tmp_path, monkeypatch, format
):
    # A future JAX whose export internals moved cannot be asked for the StableHLO version
    # TensorFlow reads: the export must stop before anything is traced (the trace would
    # take the time, then fail in TensorFlow), name both versions and what to do, and
    # write nothing.
    versions = {"jax": "0.13.0", "tensorflow": "2.21.0"}
    monkeypatch.setattr(_toolchain, "installed_version", lambda *names: versions.get(names[0]))
    monkeypatch.setattr(_toolchain, "_jax_export_dialect", lambda: None)

    def no_trace(*args, **kwargs):
        raise AssertionError("traced before the refusal")

    monkeypatch.setattr(policyport._export, "trace", no_trace)
    with pytest.raises(UnsupportedError) as caught:
        policyport.export(make_policy("Box"), format, tmp_path / f"p{FORMATS[format].suffix}")
    message = str(caught.value)
    assert "TensorFlow 2.21.0" in message and "jax 0.13.0" in message
    assert "--format onnx" in message and f"policyport[{format}]" in message
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("tensorflow_version", "pinned"),
    [("2.21.0", "1.15.0"), ("2.22.0", None), (None, None)],
)
def test_jax_is_asked_for_the_stablehlo_version_tensorflow_reads(
    monkeypatch, tensorflow_version, pinned
):
    # TensorFlow 2.21 reads the StableHLO 1.15.0 that jax 0.10.2 writes, not the 1.18.0 of
    # jax 0.12: inside the pin, jax.export's version is at most 1.15.0; a TensorFlow newer
    # than the table, or none, leaves JAX's own choice; outside, nothing changes.
    from jax._src.export import _export

    versions = {"tensorflow": tensorflow_version}
    monkeypatch.setattr(_toolchain, "installed_version", lambda *names: versions.get(names[0]))
    own = _toolchain._jax_writes(_export.hlo)
    with _toolchain.stablehlo_tensorflow_reads():
        inside = _toolchain._jax_writes(_export.hlo)
    expected = own
    if pinned is not None and _toolchain.release(own) > _toolchain.release(pinned):
        expected = pinned
    assert inside == expected
    assert _toolchain._jax_writes(_export.hlo) == own


@pytest.mark.parametrize("format", list(FORMATS))
def test_every_format_exports_the_bundled_policy_with_the_jax_installed_here(tmp_path, format):
    # The quick start's command on this leg's Python and JAX, in every format (jax 0.12
    # with TensorFlow 2.21 on the newest-JAX leg): either the export passes parity, or
    # the CLI refuses it (exit 2, the versions named, nothing written). Never a parity
    # failure (exit 1) or a crash.
    refusal = FORMATS[format].refusal()
    output = tmp_path / f"gridworld{FORMATS[format].suffix}"
    done = subprocess.run(
        [str(EXPORT_POLICY), str(GRIDWORLD), "--format", format, "-o", str(output)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if refusal is None:
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Parity PASS" in done.stdout and output.exists()
    else:
        assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
        assert f"jax {jax.__version__}" in done.stderr and "TensorFlow" in done.stderr
        assert _leftovers(tmp_path) == []


def test_the_reference_runs_on_the_cpu_at_full_precision_whatever_the_defaults():
    # A user who trains on a GPU exports from the same process: JAX's default device is
    # the GPU and its float32 matmuls run at reduced precision. Stand-ins here (no GPU):
    # two host devices with the default pinned to the second, the policy's weights
    # committed there, and the lowest matmul precision set globally. The reference must
    # run on the first CPU device with full-precision matmuls, and the check still pass.
    result = _python(
        """
        import json, tempfile
        from pathlib import Path
        import jax, jax.numpy as jnp
        jax.config.update("jax_default_matmul_precision", "bfloat16")
        second = jax.devices("cpu")[1]
        jax.config.update("jax_default_device", second)
        import policyport
        from policyport import _backend
        from policyport.checks._compiled import run_compiled
        from conftest import make_policy
        policy = jax.tree.map(
            lambda x: jax.device_put(x, second) if isinstance(x, jax.Array) else x,
            make_policy("Box"),
        )
        traced = policyport.trace(policy)
        x = jnp.ones((3, *traced.inputs[0].shape), jnp.float32)
        def arrays(tree):
            return [a for a in jax.tree.leaves(tree) if isinstance(a, jax.Array)]
        outputs, _ = run_compiled(traced, "outputs_and_margins", [x])
        def lowered():
            f = jax.jit(lambda a, b: a @ b)
            return f.lower(jnp.ones((4, 4)), jnp.ones((4, 4))).as_text()
        with _backend.reference_backend():
            inside = lowered()
        [exported] = policyport.export(policy, "onnx", Path(tempfile.mkdtemp()) / "p.onnx")
        print(json.dumps({
            "weights": sorted({d.id for x in arrays(policy) for d in x.devices()}),
            "consts": sorted({d.id for c in arrays(traced.jaxpr.consts) for d in c.devices()}),
            "reference": sorted({d.id for o in outputs for d in o.devices()}),
            "outside": "HIGHEST" in lowered(),
            "inside": "HIGHEST" in inside,
            "passed": exported.report.passed,
            "report": exported.report.reference,
        }))
        """,
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    assert result["weights"] == [1]  # the stand-in really lives elsewhere
    assert result["consts"] == [0]
    assert result["reference"] == [0]
    assert result["outside"] is False  # the user's setting is in force outside...
    assert result["inside"] is True  # ...and overridden for the reference
    assert result["passed"] is True
    assert "float32 matmuls at full precision" in result["report"]


def test_the_supported_range_includes_the_jax_installed_here():
    # pyproject's ranges are what CI runs: each leg's JAX must lie inside them.
    text = (ROOT / "pyproject.toml").read_text()
    assert '"jax>=0.10.2,<0.13"' in text and 'requires-python = ">=3.11"' in text
    version = _toolchain.release(jax.__version__)
    assert (0, 10, 2) <= version < (0, 13)
    assert (3, 11) <= sys.version_info[:2] <= (3, 13)
