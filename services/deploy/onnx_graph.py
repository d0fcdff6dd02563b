"""A fitted pipeline as one ONNX graph: our own preprocessing nodes, then skl2onnx's estimator.

skl2onnx does not take the training pipeline's preprocessing as it is: the categorical branch
starts with a Python function (``as_categories_frame``, one spelling per category) and imputes
strings over NaN. So the preprocessing graph is built here from the fitted transformers'
parameters, in double precision, and only the estimator goes through skl2onnx (also in double:
a forest in float32 drifts by several hundredths of a probability). The category spelling is
applied where the runtime's string tensor is built from the rows (``runtime.OnnxInputs``); a
missing category travels as a mask beside the strings, so no string value stands for "missing".

Graph inputs: ``numeric`` (double, rows x numeric features), ``categorical`` (string, rows x
categorical features) and ``categorical_missing`` (bool, same shape); each only when the model has
such features. Whatever the graph does not recognise raises ``Unconvertible`` with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from services.deploy.serving.predict import ModelCard

NUMERIC_INPUT = "numeric"
CATEGORICAL_INPUT = "categorical"
MISSING_INPUT = "categorical_missing"
OPSET = 18
ML_OPSET = 3  # TreeEnsemble* in double precision needs ai.onnx.ml 3
_PREFIX = "conveyor_"


class Unconvertible(Exception):
    """The pipeline has a part this graph builder or skl2onnx cannot express; the reason says which."""


def convert(model: Any, card: ModelCard) -> bytes:
    """The serialised ONNX model computing ``model``'s estimator outputs from the three inputs."""
    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        raise Unconvertible(f"expected a preprocessing + estimator pipeline, got {type(model).__name__}")
    preprocess, estimator = model.steps[0][1], model.steps[1][1]
    if not isinstance(preprocess, ColumnTransformer):
        raise Unconvertible(f"preprocessing {type(preprocess).__name__} is not a ColumnTransformer")
    builder = _Graph()
    blocks = _blocks(preprocess, card, builder)
    width = sum(size for _, size in blocks)
    estimator_model = _estimator_graph(estimator, width)
    features = estimator_model.graph.input[0].name
    if len(blocks) == 1:  # a copy of every value otherwise, for nothing
        builder.node("Identity", [blocks[0][0]], [features])
    else:
        builder.node("Concat", [name for name, _ in blocks], [features], axis=1)
    return _joined(builder, estimator_model).SerializeToString()


def outputs_of(card: ModelCard) -> str:
    """Which estimator output the runtime reads: probabilities for a classifier, values otherwise."""
    return "probabilities" if card.task == "classification" else "variable"


class _Graph:
    """Nodes and constants of the preprocessing graph, with names that cannot meet skl2onnx's."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{_PREFIX}{hint}_{self._count}"

    def constant(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.constants.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], *, domain: str = "", **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, outputs, name=self.name(op), domain=domain, **attrs))
        return outputs[0]

    def op(self, op: str, inputs: list[str], *, domain: str = "", **attrs: Any) -> str:
        return self.node(op, inputs, [self.name(op.lower())], domain=domain, **attrs)


def _blocks(preprocess: ColumnTransformer, card: ModelCard, graph: _Graph) -> list[tuple[str, int]]:
    """The preprocessed blocks in the column transformer's output order, with their widths."""
    blocks: list[tuple[str, int]] = []
    for name, transformer, columns in preprocess.transformers_:
        if name == "remainder" and transformer == "drop":
            continue
        if list(columns) == [] or transformer == "drop":
            continue
        if name == "numeric" and tuple(columns) == card.numeric:
            blocks.append(_numeric(transformer, graph, len(columns)))
        elif name == "categorical" and tuple(columns) == card.categorical:
            blocks.append(_categorical(transformer, graph, len(columns)))
        else:
            raise Unconvertible(f"preprocessing branch {name!r} over {list(columns)} is not one we convert")
    if not blocks:
        raise Unconvertible("the preprocessing yields no features")
    return blocks


def _numeric(branch: Any, graph: _Graph, width: int) -> tuple[str, int]:
    """Impute NaN with the fitted statistics, then scale as StandardScaler does."""
    steps = _steps(branch)
    imputer = steps.pop(0)
    if not isinstance(imputer, SimpleImputer) or not _imputes_nan(imputer):
        raise Unconvertible(f"numeric imputer {imputer!r} is not a SimpleImputer over NaN")
    statistics = np.asarray(imputer.statistics_, dtype=np.float64)
    if statistics.shape != (width,) or np.isnan(statistics).any():
        raise Unconvertible("a numeric feature was all missing in training (the imputer dropped it)")
    graph.inputs.append(helper.make_tensor_value_info(NUMERIC_INPUT, TensorProto.DOUBLE, [None, width]))
    fill = graph.constant("numeric_fill", statistics.reshape(1, width))
    value = graph.op("Where", [graph.op("IsNaN", [NUMERIC_INPUT]), fill, NUMERIC_INPUT])
    for step in steps:
        if not isinstance(step, StandardScaler):
            raise Unconvertible(f"numeric step {type(step).__name__} is not one we convert")
        if step.with_mean:
            value = graph.op("Sub", [value, graph.constant("mean", _row(step.mean_, width))])
        if step.with_std:
            value = graph.op("Div", [value, graph.constant("scale", _row(step.scale_, width))])
    return value, width


def _categorical(branch: Any, graph: _Graph, width: int) -> tuple[str, int]:
    """Per column: category string to output position (LabelEncoder), the missing mask to the
    imputed category's position, then one-hot by comparing positions."""
    # The imputed categories become a text array before the encoder (a speed-up inside
    # scikit-learn); the graph's categories are text already.
    steps = [step for step in _steps(branch) if not _is_text_array(step)]
    spelling, imputer, encoder = ([*steps, None, None, None])[:3]
    if len(steps) != 3 or not _is_category_spelling(spelling):
        raise Unconvertible(f"categorical steps {[type(s).__name__ for s in steps]} are not one we convert")
    if not isinstance(imputer, SimpleImputer) or not _imputes_nan(imputer):
        raise Unconvertible("categorical imputer is not a SimpleImputer over NaN")
    if (
        not isinstance(encoder, OneHotEncoder)
        or encoder.drop is not None
        or encoder.handle_unknown != "ignore"
    ):
        raise Unconvertible("categorical encoder is not a OneHotEncoder that ignores unknown categories")
    graph.inputs.append(helper.make_tensor_value_info(CATEGORICAL_INPUT, TensorProto.STRING, [None, width]))
    graph.inputs.append(helper.make_tensor_value_info(MISSING_INPUT, TensorProto.BOOL, [None, width]))
    parts: list[str] = []
    total = 0
    for column, positions in enumerate(_positions(encoder, width)):
        categories = [str(category) for category in encoder.categories_[column]]
        size = max(positions) + 1
        index = graph.constant("column", np.asarray([column], dtype=np.int64))
        text = graph.op("Gather", [CATEGORICAL_INPUT, index], axis=1)
        missing = graph.op("Gather", [MISSING_INPUT, index], axis=1)
        position = graph.op(
            "LabelEncoder",
            [text],
            domain="ai.onnx.ml",
            keys_strings=categories,
            values_int64s=positions,
            default_int64=-1,  # an unknown category: all zeros, as handle_unknown="ignore"
        )
        fill = _fill_position(imputer.statistics_[column], categories, positions)
        position = graph.op(
            "Where", [missing, graph.constant("fill", np.asarray([[fill]], np.int64)), position]
        )
        every = graph.constant("positions", np.arange(size, dtype=np.int64).reshape(1, size))
        parts.append(graph.op("Cast", [graph.op("Equal", [position, every])], to=TensorProto.DOUBLE))
        total += size
    if len(parts) == 1:
        return parts[0], total
    return graph.op("Concat", parts, axis=1), total


def _positions(encoder: OneHotEncoder, width: int) -> list[list[int]]:
    """Each category's output column within its feature's block, as the fitted encoder places it.

    Read from the encoder itself (one row per category through ``transform``), so rare categories
    merged by ``max_categories`` land in the merged column exactly as scikit-learn puts them.
    """
    categories = [list(c) for c in encoder.categories_]
    if len(categories) != width or any(not all(isinstance(v, str) for v in c) for c in categories):
        raise Unconvertible("categorical categories are not strings")
    widths = [
        len(c) - len(rare) + 1 if rare is not None and len(rare) else len(c)
        for c, rare in zip(categories, _infrequent(encoder), strict=True)
    ]
    starts = np.cumsum([0, *widths])
    result: list[list[int]] = []
    for column, values in enumerate(categories):
        probe = np.asarray([[c[0] for c in categories]] * len(values), dtype=object)
        probe[:, column] = values
        rows: Any = pd.DataFrame(probe, columns=encoder.feature_names_in_) if _named(encoder) else probe
        block = np.asarray(encoder.transform(rows))[:, starts[column] : starts[column + 1]]
        if not np.all(block.sum(axis=1) == 1):
            raise Unconvertible("the encoder does not map every category to exactly one column")
        result.append(block.argmax(axis=1).astype(int).tolist())
    return result


def _named(encoder: OneHotEncoder) -> bool:
    return hasattr(encoder, "feature_names_in_")


def _infrequent(encoder: OneHotEncoder) -> list[Any]:
    infrequent = getattr(encoder, "infrequent_categories_", None)
    return list(infrequent) if infrequent is not None else [None] * len(encoder.categories_)


def _fill_position(statistic: Any, categories: list[str], positions: list[int]) -> int:
    """Where the imputed category goes: its column, or none when training never saw it."""
    text = str(statistic)
    return positions[categories.index(text)] if text in categories else -1


def _estimator_graph(estimator: Any, width: int) -> onnx.ModelProto:
    # Imported here: skl2onnx is needed by the deploy service only, never by a serving worker.
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType

    options: dict[int, dict[str, Any]] = {}
    if hasattr(estimator, "predict_proba"):
        options[id(estimator)] = {"zipmap": False}
    try:
        converted = convert_sklearn(
            estimator,
            initial_types=[("features", DoubleTensorType([None, width]))],
            options=options,
            target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
        )
    except Exception as error:  # skl2onnx says why in its own exception types
        raise Unconvertible(f"skl2onnx cannot convert {type(estimator).__name__}: {error}") from error
    _exact_trees(converted, estimator)
    return converted


def _exact_trees(model: onnx.ModelProto, estimator: Any) -> None:
    """Tree operators that branch exactly as scikit-learn does, and scores typed as the graph says.

    skl2onnx writes thresholds as float32 attributes whatever the input type; a double compared
    with a rounded threshold takes the other branch now and then (a forest's probability came out
    0.07 off). scikit-learn compares float32 features with double thresholds, so here the features
    are rounded to float32 (and widened back) and the thresholds are the trees' own doubles
    (ai.onnx.ml 3's ``nodes_values_as_tensor``). ONNX's tree operators emit float32 scores whatever
    the input: where the graph declares doubles, they are cast (about 1e-7 relative, once).
    """
    trees = _sklearn_trees(estimator)
    graph = model.graph
    declared = {v.name: v.type.tensor_type.elem_type for v in [*graph.output, *graph.value_info]}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.domain != "ai.onnx.ml" or node.op_type not in {
            "TreeEnsembleClassifier",
            "TreeEnsembleRegressor",
        }:
            nodes.append(node)
            continue
        if trees is not None:
            _exact_thresholds(node, trees)
            rounded, widened = f"{_PREFIX}{node.input[0]}_float32", f"{_PREFIX}{node.input[0]}_widened"
            nodes.append(helper.make_node("Cast", [node.input[0]], [rounded], to=TensorProto.FLOAT))
            nodes.append(helper.make_node("Cast", [rounded], [widened], to=TensorProto.DOUBLE))
            node.input[0] = widened
        nodes.append(node)
        position = 1 if node.op_type == "TreeEnsembleClassifier" else 0
        scores = node.output[position]
        if declared.get(scores) == TensorProto.DOUBLE:
            node.output[position] = f"{_PREFIX}{scores}_float32"
            nodes.append(helper.make_node("Cast", [node.output[position]], [scores], to=TensorProto.DOUBLE))
    del graph.node[:]
    graph.node.extend(nodes)


def _exact_thresholds(node: onnx.NodeProto, trees: list[Any]) -> None:
    ids = {a.name: list(a.ints) for a in node.attribute if a.name in {"nodes_treeids", "nodes_nodeids"}}
    pairs = zip(ids["nodes_treeids"], ids["nodes_nodeids"], strict=True)
    thresholds = np.asarray([trees[t].threshold[n] for t, n in pairs], dtype=np.float64)
    kept = [a for a in node.attribute if a.name != "nodes_values"]
    del node.attribute[:]
    node.attribute.extend(kept)
    node.attribute.append(
        helper.make_attribute("nodes_values_as_tensor", numpy_helper.from_array(thresholds))
    )


def _sklearn_trees(estimator: Any) -> list[Any] | None:
    """The fitted trees by ONNX tree id, for forests and single trees (None for boosting)."""
    name = type(estimator).__name__
    if name in {
        "RandomForestClassifier",
        "RandomForestRegressor",
        "ExtraTreesClassifier",
        "ExtraTreesRegressor",
    }:
        return [tree.tree_ for tree in estimator.estimators_]
    if name in {"DecisionTreeClassifier", "DecisionTreeRegressor"}:
        return [estimator.tree_]
    return None


def _joined(graph: _Graph, estimator: onnx.ModelProto) -> onnx.ModelProto:
    joined = helper.make_graph(
        graph.nodes + list(estimator.graph.node),
        "conveyor_pipeline",
        graph.inputs,
        list(estimator.graph.output),
        initializer=graph.constants + list(estimator.graph.initializer),
    )
    opsets = {o.domain: o.version for o in estimator.opset_import}
    opsets[""] = max(opsets.get("", 0), OPSET)
    # LabelEncoder with string keys needs 2, tree thresholds in double 3.
    opsets["ai.onnx.ml"] = max(opsets.get("ai.onnx.ml", 0), ML_OPSET)
    model = helper.make_model(
        joined, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())]
    )
    model.ir_version = estimator.ir_version
    onnx.checker.check_model(model)
    return model


def _steps(branch: Any) -> list[Any]:
    return [step for _, step in branch.steps] if isinstance(branch, Pipeline) else [branch]


def _imputes_nan(imputer: SimpleImputer) -> bool:
    missing = imputer.missing_values
    return isinstance(missing, float) and np.isnan(missing) and not imputer.add_indicator


def _is_category_spelling(step: Any) -> bool:
    from services.train.fitting import as_categories_frame

    return isinstance(step, FunctionTransformer) and step.func is as_categories_frame


def _is_text_array(step: Any) -> bool:
    from services.train.fitting import as_text_array

    return isinstance(step, FunctionTransformer) and step.func is as_text_array


def _row(values: Any, width: int) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(1, width)
