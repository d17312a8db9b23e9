"""ONNX: the traced jaxpr lowered to ONNX (policyport's lowering, else jax2onnx), then
tidied for consumers; run in onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
from onnx import TensorProto, helper

from .._errors import MissingDependencyError, UnsupportedError
from ..tracing import TracedPolicy
from ._base import JAX2ONNX_MIN_OPSET, MIN_OPSET, ArtifactFormat, ExportOptions, Runner, Runtime
from ._onnx_lowering import NotLowerable, lower_natively
from ._onnx_optimize import optimize
from ._targets import TARGETS, apply_target
from ._toolchain import installed_version, release

_BATCH = "batch"
# The metadata key naming the lowering that wrote the graph: `policyport`, or
# `jax2onnx (<why policyport's lowering could not>)`. It is a fact about the graph, so
# it survives `set_model_metadata`, which replaces the contract's metadata.
LOWERING_KEY = "policyport.lowering"
# The fallback lowering (the `fallback` extra) and the first JAX (major, minor) it breaks
# on: jax2onnx 0.17.1 imports `jax._src.core.ClosedJaxpr`, gone in jax 0.12 (measured).
JAX2ONNX_VERSION = "0.17.1"
JAX2ONNX_JAX = (0, 12)


def _sub_jaxprs(param: object) -> list:
    """The jaxprs inside an equation parameter: a (closed) jaxpr or a tuple of them (cond)."""
    if isinstance(param, list | tuple):
        return [j for p in param for j in _sub_jaxprs(p)]
    if hasattr(param, "eqns"):
        return [param]
    inner = getattr(param, "jaxpr", None)
    return [inner] if hasattr(inner, "eqns") else []


def _jaxpr_primitives(jaxpr) -> set[str]:
    names: set[str] = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for param in eqn.params.values():
            for inner in _sub_jaxprs(param):
                names |= _jaxpr_primitives(inner)
    return names


def _unsupported_primitives(traced: TracedPolicy) -> list[str]:
    """Primitives in the traced jaxpr that jax2onnx has no lowering for."""
    from jax2onnx.converter.ir_context import IRContext  # noqa: F401  (registers plugins)
    from jax2onnx.plugins.plugin_system import PLUGIN_REGISTRY, import_all_plugins

    import_all_plugins()
    structural = {"pjit", "jit", "closed_call", "custom_jvp_call", "custom_vjp_call"}
    primitives = _jaxpr_primitives(traced.artifact_jaxpr.jaxpr)
    return sorted(primitives - set(PLUGIN_REGISTRY) - structural)


def lower_to_onnx(traced: TracedPolicy, opset: int) -> onnx.ModelProto:
    """The policy as an ONNX model: inputs and outputs named and typed as the contract says.

    policyport's own lowering handles the primitives MLP policies use and takes a fraction
    of a second; anything else goes through jax2onnx (every primitive, but ~10 s).
    """
    try:
        model = lower_natively(traced, opset)
        lowering = "policyport"
    except NotLowerable as e:
        if opset < JAX2ONNX_MIN_OPSET:
            raise UnsupportedError(
                f"--opset {opset} is below what this policy can be written at: policyport's "
                f"own lowering (opset {MIN_OPSET}+) lacks {e}, and jax2onnx, which lowers "
                f"it instead, writes opset {JAX2ONNX_MIN_OPSET} and above. Export with "
                f"--opset {JAX2ONNX_MIN_OPSET} or higher, or avoid that in the policy."
            ) from e
        model = _lower_with_jax2onnx(traced, opset, str(e))
        lowering = f"jax2onnx (policyport's lowering lacks {e})"
    optimize(model)
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    model.producer_name = "policyport"
    model.doc_string = f"lowered by {lowering}"
    _set_lowering(model, lowering)
    return model


def _set_lowering(model: onnx.ModelProto, lowering: str) -> None:
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != LOWERING_KEY]
    del model.metadata_props[:]
    for key, value in [*kept, (LOWERING_KEY, lowering)]:
        model.metadata_props.add(key=key, value=value)


def lowering_of(model: onnx.ModelProto) -> str | None:
    """Which lowering wrote `model` (`policyport` or `jax2onnx (...)`), if it says."""
    return next((p.value for p in model.metadata_props if p.key == LOWERING_KEY), None)


def _import_jax2onnx(why: str) -> Any:
    """jax2onnx, the opt-in fallback (`policyport[fallback]`), or an error naming what the
    policy needs it for and what to install."""
    jax = installed_version("jax") or "?"
    if installed_version("jax2onnx") is None:
        raise MissingDependencyError(
            f"This policy needs the jax2onnx fallback for the onnx format: policyport's own "
            f"lowering lacks {why}. Install it with: pip install 'policyport[fallback]' "
            f"(jax2onnx {JAX2ONNX_VERSION} works with jax < {'.'.join(map(str, JAX2ONNX_JAX))}; "
            f"jax {jax} is installed), or export --format stablehlo, which needs no lowering."
        )
    if release(jax)[:2] >= JAX2ONNX_JAX:
        raise UnsupportedError(
            f"This policy needs the jax2onnx fallback for the onnx format (policyport's own "
            f"lowering lacks {why}), and jax2onnx {installed_version('jax2onnx')} does not "
            f"run with jax {jax} (it reads internals jax {'.'.join(map(str, JAX2ONNX_JAX))} "
            "removed). Export --format stablehlo from this environment, or onnx from one "
            "with jax 0.10.x: pip install 'jax==0.10.*' 'jaxlib==0.10.*' "
            "'policyport[fallback]' in a separate virtual environment."
        )
    import jax2onnx

    return jax2onnx


def _lower_with_jax2onnx(traced: TracedPolicy, opset: int, why: str) -> onnx.ModelProto:
    to_onnx = _import_jax2onnx(why).to_onnx
    missing = _unsupported_primitives(traced)
    if missing:
        raise UnsupportedError(
            f"The policy uses JAX primitive(s) {', '.join(missing)}, which the onnx format "
            "(and ort, built from it) cannot express: jax2onnx has no ONNX lowering for "
            "them. Export with --format stablehlo or --format savedmodel instead, or "
            "change the policy to avoid them."
        )
    model = to_onnx(
        traced.batched,
        traced.symbolic_inputs(_BATCH),
        model_name="policyport_policy",
        opset=opset,
        input_names=list(traced.input_names),
        output_names=list(traced.output_names),
    )
    _widen_action_to_int64(model)
    return model


def _widen_action_to_int64(model: onnx.ModelProto) -> None:
    """jax computes the action as int32 (x64 off); the contract says int64."""
    action = next(o for o in model.graph.output if o.name == "action")
    if action.type.tensor_type.elem_type != TensorProto.INT32:
        return
    narrow = "action_int32"
    for node in model.graph.node:
        node.output[:] = [narrow if name == "action" else name for name in node.output]
        node.input[:] = [narrow if name == "action" else name for name in node.input]
    model.graph.node.append(helper.make_node("Cast", [narrow], ["action"], to=TensorProto.INT64))
    action.type.tensor_type.elem_type = TensorProto.INT64


def set_model_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Replace the model's metadata with `metadata`, keeping the record of its lowering."""
    lowering = lowering_of(model)
    del model.metadata_props[:]
    for key, value in sorted(metadata.items()):
        model.metadata_props.add(key=key, value=value)
    if lowering is not None and LOWERING_KEY not in metadata:
        _set_lowering(model, lowering)


def check_model(model: onnx.ModelProto) -> None:
    """onnx's checker with full shape inference: a malformed graph fails here, not later."""
    onnx.checker.check_model(model, full_check=True)


def build_model(
    traced: TracedPolicy, options: ExportOptions, metadata: dict[str, str]
) -> onnx.ModelProto:
    """The checked ONNX model, metadata included: what both `onnx` and `ort` start from."""
    model = lower_to_onnx(traced, options.opset)
    if options.target is not None:
        apply_target(model, TARGETS[options.target])
    set_model_metadata(model, metadata)
    check_model(model)
    return model


def load_onnxruntime(path: Path) -> Runner:
    """A `.onnx` or `.ort` file in onnxruntime's CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the checks report their own findings
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, inputs), strict=True))

    return run


def read_onnxruntime_metadata(path: Path) -> dict[str, str]:
    """A `.onnx` or `.ort` file's metadata, as onnxruntime reads it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)


def _onnxruntime_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


ONNXRUNTIME = Runtime("onnxruntime", ("onnx", "ort"), load_onnxruntime, _onnxruntime_version)


class OnnxFormat(ArtifactFormat):
    name: ClassVar[str] = "onnx"
    suffix: ClassVar[str] = ".onnx"
    runtime: ClassVar[str] = "onnxruntime"
    description: ClassVar[str] = "ONNX model (onnxruntime, C/C++, Node, web)"

    def write(
        self,
        traced: TracedPolicy,
        staging: Path,
        stem: str,
        options: ExportOptions,
        metadata: dict[str, str],
    ) -> tuple[Path, ...]:
        model = build_model(traced, options, metadata)
        path = staging / f"{stem}{self.suffix}"
        onnx.save_model(model, path)
        return (path,)

    def read_metadata(self, artifact: Path) -> dict[str, str]:
        return read_onnxruntime_metadata(artifact)

    def set_metadata(self, staged: tuple[Path, ...], metadata: dict[str, str]) -> None:
        model = onnx.load_model(staged[0])
        set_model_metadata(model, metadata)
        onnx.save_model(model, staged[0])
