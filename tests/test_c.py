"""The c format beyond the registry's matrix: the header a user compiles a driver against,
the symbols the object defines and needs, the prefix, the metadata comment, the policy
kinds and the sample entry, and what is refused before anything is written."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import policyport
from conftest import make_policy
from kinds import KINDS
from policyport import InputError
from policyport._cli import run as cli
from policyport.checks import ATOL, RTOL, reference_outputs, sample_inputs
from policyport.formats import FORMATS, TARGET_KEY
from policyport.formats._c_header import header_text
from policyport.formats._c_names import c_identifier
from policyport.formats._c_runtime import C_FLAGS, compiler

ROWS, ALL_MASKED = 8, 2
# What a C policy may need from outside itself: libm and the C library's memory copies.
# Nothing that allocates.
ALLOWED_UNDEFINED = {"fmaxf", "fminf", "expf", "logf", "tanhf", "sqrtf", "memcpy", "memset"}
ALLOCATORS = {"malloc", "calloc", "realloc", "free"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[object, Path]]:
    """A Discrete policy as `policy.c` and a MultiDiscrete one as `other.c`, one folder."""
    folder = tmp_path_factory.mktemp("c")
    made = {}
    for stem, action in (("policy", "Discrete"), ("other", "MultiDiscrete")):
        policy = make_policy(action, seed=7)
        [result] = policyport.export(policy, "c", folder / f"{stem}.c")
        assert result.report.passed, result.report.to_table()
        made[stem] = policy, result.paths[0]
    return made


def _compile(*command: str, cwd: Path) -> None:
    done = subprocess.run([compiler(), *command], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def _c_rows(array: np.ndarray) -> str:
    cells = [", ".join(f"{float(x)!r}f" if array.dtype.kind == "f" else str(int(x)) for x in r)
             for r in array.reshape(len(array), -1)]  # fmt: skip
    return ",\n    ".join(f"{{{c}}}" for c in cells)


def test_a_driver_compiled_against_the_headers_runs_both_policies(exported, tmp_path):
    """The user's side: a strict-C99 driver (`-pedantic`, the headers only) linked with two
    policies in one program; its actions equal JAX's, its values within the parity check's
    tolerances (rtol=atol=1e-5: float32 sums in another order), all-masked rows included."""
    for _, path in exported.values():
        for file in (path, path.with_suffix(".h")):
            shutil.copy(file, tmp_path)
    (policy, _), (other, _) = exported["policy"], exported["other"]
    inputs = sample_inputs(policy, seed=11, batch=ROWS, all_false_rows=ALL_MASKED)
    other_inputs = sample_inputs(other, seed=12, batch=ROWS, all_false_rows=ALL_MASKED)
    driver = f"""#include <stdio.h>
#include "policy.h"
#include "other.h"

static const float OBS[{ROWS}][POLICY_OBSERVATION_SIZE] = {{
    {_c_rows(inputs["observation"])}}};
static const bool MASK[{ROWS}][POLICY_ACTION_MASK_SIZE] = {{
    {_c_rows(inputs["action_mask"])}}};
static const float OTHER_OBS[{ROWS}][OTHER_OBSERVATION_SIZE] = {{
    {_c_rows(other_inputs["observation"])}}};
static const bool OTHER_MASK[{ROWS}][OTHER_ACTION_MASK_SIZE] = {{
    {_c_rows(other_inputs["action_mask"])}}};

int main(void) {{
    int row, i;
    for (row = 0; row < {ROWS}; ++row) {{
        int64_t action[POLICY_ACTION_SIZE], actions[OTHER_ACTION_SIZE];
        float value[POLICY_VALUE_SIZE], other_value[OTHER_VALUE_SIZE];
        if (policy_run(OBS[row], MASK[row], action, value) != 0) return 1;
        if (other_run(OTHER_OBS[row], OTHER_MASK[row], actions, other_value) != 0) return 1;
        if (action[0] < 0 || action[0] >= POLICY_ACTION_N) return 2;
        printf("%lld %.9g", (long long)action[0], value[0]);
        for (i = 0; i < OTHER_ACTION_SIZE; ++i) printf(" %lld", (long long)actions[i]);
        printf(" %.9g\\n", other_value[0]);
    }}
    return 0;
}}
"""
    (tmp_path / "driver.c").write_text(driver)
    strict = ("-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror")
    _compile(*strict, "-c", "driver.c", cwd=tmp_path)
    for stem in ("policy", "other"):
        _compile(*C_FLAGS, "-O2", "-c", f"{stem}.c", cwd=tmp_path)
    _compile("driver.o", "policy.o", "other.o", "-o", "driver", "-lm", cwd=tmp_path)
    done = subprocess.run([tmp_path / "driver"], capture_output=True, text=True, check=True)
    got = np.array([line.split() for line in done.stdout.splitlines()], dtype=np.float64)
    want, other_want = reference_outputs(policy, inputs), reference_outputs(other, other_inputs)
    assert got.shape == (ROWS, 6)
    assert np.array_equal(got[:, 0], want["action"])
    assert np.array_equal(got[:ALL_MASKED, 0], np.zeros(ALL_MASKED))
    assert np.array_equal(got[:, 2:5], other_want["action"])
    np.testing.assert_allclose(got[:, 1], want["value"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got[:, 5], other_want["value"], rtol=RTOL, atol=ATOL)


def test_the_header_compiles_as_cpp(exported, tmp_path):
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler (scripts/test-deps installs g++)")
    header = exported["policy"][1].with_suffix(".h")
    (tmp_path / "use.cpp").write_text(f'#include "{header}"\nint main() {{ return 0; }}\n')
    done = subprocess.run(
        [cxx, "-Wall", "-Werror", "-fsyntax-only", "use.cpp"], cwd=tmp_path, capture_output=True
    )
    assert done.returncode == 0, done.stderr


def test_the_object_defines_only_its_entry_and_allocates_nothing(exported, tmp_path):
    for stem, (_, path) in exported.items():
        obj = tmp_path / f"{stem}.o"
        _compile(*C_FLAGS, "-O2", "-c", str(path), "-o", str(obj), cwd=path.parent)
        defined = subprocess.run(
            ["nm", "-g", "--defined-only", obj], capture_output=True, text=True, check=True
        ).stdout.split()[2::3]
        needed = set(
            subprocess.run(
                ["nm", "-u", obj], capture_output=True, text=True, check=True
            ).stdout.split()[1::2]
        )
        assert defined == [f"{stem}_run"]
        assert needed <= ALLOWED_UNDEFINED and not needed & ALLOCATORS, needed
        # Berkeley `size`: text (code and const weights), data, bss. No mutable state.
        text, data, bss = map(
            int, subprocess.run(["size", obj], capture_output=True, text=True).stdout.split()[6:9]
        )
        assert text > 4 * 6 * 64 and data == 0 and bss == 0, (text, data, bss)


def test_the_prefix_is_the_stem_as_a_c_identifier():
    assert c_identifier("policy") == "policy"
    assert c_identifier("policy.sample") == "policy_sample"
    assert c_identifier("2-fast") == "p_2_fast"
    assert c_identifier("_x") == "p__x"  # never a reserved identifier


def test_the_metadata_survives_comment_and_trigraph_breakers(exported, tmp_path):
    _, path = exported["policy"]
    staged = tuple(shutil.copy(p, tmp_path) for p in (path, path.with_suffix(".h")))
    staged = tuple(Path(p) for p in staged)
    fmt = FORMATS["c"]
    meta = fmt.read_metadata(staged[0])
    hostile = meta | {"policyport.note": 'ends */ a comment, ??/ splices, naïve \\ "q"\n'}
    fmt.set_metadata(staged, hostile)
    assert fmt.read_metadata(staged[0]) == hostile
    assert staged[0].read_bytes() == path.read_bytes()  # only the header changes
    _compile(*C_FLAGS, "-c", staged[0].name, cwd=tmp_path)


def test_a_hostile_input_name_stays_inside_its_comment(exported, tmp_path):
    """An input's name comes from the policy's file (a Dict observation's key) and is
    printed in a comment beside its size macro: it must not end that comment."""
    _, path = exported["policy"]
    meta = FORMATS["c"].read_metadata(path)
    inputs = json.loads(meta["policyport.inputs"])
    inputs[0]["name"] = 'observation*/ int evil; /* ??/\n"'
    header = header_text("policy", meta | {"policyport.inputs": json.dumps(inputs)})
    (tmp_path / "policy.h").write_text(header)
    _compile(*C_FLAGS, "-x", "c", "-c", "policy.h", "-o", "header.o", cwd=tmp_path)
    symbols = subprocess.run(["nm", "header.o"], cwd=tmp_path, capture_output=True, text=True)
    assert symbols.returncode == 0 and "evil" not in symbols.stdout, symbols.stdout


@pytest.mark.parametrize("kind", ["q_dict", "actor_critic_tuple", "sac", "layernorm"])
def test_kinds_heads_and_dict_observations(kind, tmp_path):
    policy = KINDS[kind](3)
    [result] = policyport.export(policy, "c", tmp_path / "policy.c")
    assert result.report.passed, result.report.to_table()
    header = result.paths[1].read_text()
    for spec in json.loads(FORMATS["c"].read_metadata(result.paths[0])["policyport.inputs"]):
        assert f"POLICY_{c_identifier(spec['name']).upper()}_SIZE" in header


def test_the_sample_entry_takes_noise_and_documents_it(tmp_path):
    results = policyport.export(make_policy("Discrete", seed=2), "c", tmp_path / "p.c", sample=True)
    assert [r.entry for r in results] == ["default", "sample"]
    assert all(r.report.passed for r in results)
    sample_c, sample_h = results[1].paths
    assert sample_c.name == "p.sample.c" and sample_h.name == "p.sample.h"
    header = sample_h.read_text()
    assert "int p_sample_run(const float observation[P_SAMPLE_OBSERVATION_SIZE]" in header
    assert "float log_prob[P_SAMPLE_LOG_PROB_SIZE]);" in header
    assert "#define P_SAMPLE_NOISE_SIZE 5" in header and "offset 0, 5 values, gumbel" in header


def test_target_mcu_is_recorded_and_other_targets_refused(tmp_path):
    policy = make_policy("MultiBinary", seed=4)
    [result] = policyport.export(policy, "c", tmp_path / "m.c", target="mcu")
    assert result.report.passed
    assert FORMATS["c"].read_metadata(result.paths[0])[TARGET_KEY] == "mcu"
    with pytest.raises(InputError, match="--target sentis applies to onnx and ort artifacts"):
        policyport.export(policy, "c", tmp_path / "s.c", target="sentis")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.c", "m.h"]


def _cli_refuses(tmp_path: Path, capsys, needle: str) -> None:
    model = tmp_path / "m.eqx"
    make_policy("Discrete").serialize(model)
    assert cli([str(model), "--format", "c", "-o", str(tmp_path / "out" / "policy.c")]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_without_the_extra_nothing_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("policyport.formats._c.installed_version", lambda *names: None)
    _cli_refuses(tmp_path, capsys, "pip install 'policyport[c]'")


def test_without_a_compiler_nothing_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr("shutil.which", lambda name: None)
    _cli_refuses(tmp_path, capsys, "apt-get install gcc")


def test_untransposed_gemm_weights_change_no_bit(tmp_path, monkeypatch):
    """The generator is fed `[K][N]` Gemm weights so that the compiler vectorises across
    outputs; each sum keeps its order, so the outputs are the same bits as with the
    graph's own `[N][K]` layout (exact equality, no tolerance)."""
    from policyport.formats import _c_generate
    from policyport.formats._c_runtime import load_c

    policy = make_policy("MultiDiscrete", seed=9)
    inputs = sample_inputs(policy, seed=13, batch=512, all_false_rows=8)
    [fast] = policyport.export(policy, "c", tmp_path / "fast.c")
    monkeypatch.setattr(_c_generate, "untransposed_gemms", lambda model: None)
    [plain] = policyport.export(policy, "c", tmp_path / "plain.c")
    assert "input_b[6][64]" in fast.paths[0].read_text()
    assert "input_b[64][6]" in plain.paths[0].read_text()
    got, want = load_c(fast.paths[0])(inputs), load_c(plain.paths[0])(inputs)
    for name in want:
        assert np.array_equal(got[name], want[name]), name


def test_a_weight_shared_by_two_gemms_is_transposed_once():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from policyport.formats._c_generate import untransposed_gemms

    weight = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2]) for n in ("y", "z")]
    relu = helper.make_node("Relu", ["x"], ["r"])
    gemms = [helper.make_node("Gemm", [i, "w"], [o], transB=1) for i, o in (("x", "y"), ("r", "z"))]
    graph = helper.make_graph([relu, *gemms], "g", [x], outs, [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    untransposed_gemms(model)
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.initializer] == ["w_kn"]
    assert [n.input[1] for n in model.graph.node if n.op_type == "Gemm"] == ["w_kn", "w_kn"]
    kn = numpy_helper.to_array(model.graph.initializer[0])
    assert np.array_equal(kn, numpy_helper.to_array(weight).T)
    assert all(a.i == 0 for n in model.graph.node for a in n.attribute if a.name == "transB")
