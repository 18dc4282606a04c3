"""``onnx`` export: the spec written straight as an ONNX graph (``onnx.helper``; no tracing).

``obs`` ``[batch, *obs_shape]`` float32 -> ``Flatten`` -> ``Gemm``/``Relu`` (or ``Tanh``) chain
-> ``Tanh``, ``Mul``, ``Add`` (continuous, float32 ``[batch, act_dim]``), ``Max``/``Min`` with
the action box (``clip`` head: ``Clip`` takes scalar bounds only) or ``ArgMax`` (discrete,
int64 ``[batch]``).  Weights are dense initializers of the final (shrunk) architecture: onnxruntime
densifies sparse initializers on load anyway.  Needs the optional ``export`` extra.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .spec import PolicySpec

OPSET = 17
IR_VERSION = 8  # readable by onnxruntime releases from 1.10 on


def build_onnx(spec: PolicySpec):
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise UserError("--format onnx needs the onnx package: pip install 'sparserl[export]'") from None
    inits, nodes = [], [helper.make_node("Flatten", ["obs"], ["x0"], axis=1)]
    x = "x0"
    last = len(spec.weights) - 1
    for i, (w, b) in enumerate(zip(spec.weights, spec.biases)):
        inits += [numpy_helper.from_array(w, f"layer{i}.weight"), numpy_helper.from_array(b, f"layer{i}.bias")]
        y = f"gemm{i}"
        nodes.append(helper.make_node("Gemm", [x, f"layer{i}.weight", f"layer{i}.bias"], [y], transB=1))
        if i < last:
            x = f"act{i}"
            nodes.append(helper.make_node("Relu" if spec.activation == "relu" else "Tanh", [y], [x]))
        else:
            x = y
    if spec.head == "tanh":
        inits += [numpy_helper.from_array(spec.action_scale, "action_scale"),
                  numpy_helper.from_array(spec.action_offset, "action_offset")]
        nodes += [helper.make_node("Tanh", [x], ["squashed"]),
                  helper.make_node("Mul", ["squashed", "action_scale"], ["scaled"]),
                  helper.make_node("Add", ["scaled", "action_offset"], ["action"])]
        output = helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", spec.out_dim])
    elif spec.head == "clip":
        inits += [numpy_helper.from_array(spec.action_low, "action_low"),
                  numpy_helper.from_array(spec.action_high, "action_high")]
        nodes += [helper.make_node("Max", [x, "action_low"], ["above_low"]),
                  helper.make_node("Min", ["above_low", "action_high"], ["action"])]
        output = helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", spec.out_dim])
    else:
        nodes.append(helper.make_node("ArgMax", [x], ["action"], axis=1, keepdims=0))
        output = helper.make_tensor_value_info("action", TensorProto.INT64, ["batch"])
    obs = helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", *spec.obs_shape])
    graph = helper.make_graph(nodes, "sparserl_policy", [obs], [output], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="sparserl")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def write_onnx(spec: PolicySpec, out_path: Path) -> None:
    model = build_onnx(spec)
    import onnx
    onnx.save(model, str(out_path))
