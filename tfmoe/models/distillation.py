"""Sparse-to-dense distillation (Switch Transformers, Fedus et al. 2021, section 5.1).

```python
teacher = tfmoe.models.SwitchDecoderLM.from_preset("switch_lm_tiny_8")   # trained
student = tfmoe.models.SwitchDecoderLM.from_preset("dense_lm_tiny")      # same active FLOPs
report = tfmoe.models.init_student_from_teacher(student, teacher)       # non-expert weights
distiller = tfmoe.models.Distiller(teacher, student)                    # 0.25 hard + 0.75 soft
distiller.compile(optimizer="adamw")                                    # no `loss`: built in
distiller.fit(train_batches, validation_data=validation_batches)
student.save_weights("student.weights.h5")                              # the student alone
```

Two ingredients of the paper's recipe:

- **Initialisation.** A FLOPs-matched dense student has exactly the teacher's shape
  outside the expert layers, so `init_student_from_teacher` copies every non-expert
  weight (token embedding, output projection, relative position biases, attention,
  layer norms, the dense feed-forward networks of the non-sparse layers). The paper
  copies "the non-expert weights" only, so by default the student's feed-forward
  networks at the teacher's sparse positions keep their own (random) initialisation;
  `expert_init="mean"` sets them to the mean of the teacher's experts instead (an
  option, not the paper's recipe).
- **Loss.** `hard_label_weight * CE(labels, student) + soft_label_weight * T**2 *
  KL(teacher_T || student_T)` over real tokens, where `_T` are the softmaxes at
  temperature `T`. The defaults are 0.25 hard, 0.75 soft, T = 1; note that the
  paper's text reads the other way round ("a mixture of 0.25 for the teacher
  probabilities and 0.75 for the ground truth label"), i.e.
  `hard_label_weight=0.75, soft_label_weight=0.25`. Both are arguments.
"""

import math

import keras
import keras_hub
import numpy as np
import tensorflow as tf
from keras import ops

from tfmoe.distribute.keras_fixes import DistributedBuildMixin
from tfmoe.layers.experts import ExpertFeedForward
from tfmoe.private_apis import sublayers

SOFT_LOSSES = ("kl", "cross_entropy")
EXPERT_INITS = ("none", "mean")
_MASK_KEYS = ("decoder_padding_mask", "padding_mask")


def _freeze(model):
    """`model.trainable = False`, down to every sublayer and variable.

    (Setting `trainable = False` on a model that already says False, e.g. one loaded
    from a config with `trainable: false`, does not reach its sublayers in Keras 3.15.)
    """
    model.trainable = False
    for layer in sublayers(model):
        layer.trainable = False
    for variable in model.weights:
        variable.trainable = False


def _is_moe_layer(layer):
    from tfmoe.layers.moe_feed_forward import MoeFeedForward

    return isinstance(layer, MoeFeedForward)


def _vocabulary_size(model):
    """The `vocabulary_size` of a keras-hub task's backbone (or of the model), or None."""
    backbone = getattr(model, "backbone", None)
    return getattr(backbone if backbone is not None else model, "vocabulary_size", None)


def _check_model(name, model):
    if not isinstance(model, keras.Model):
        raise ValueError(f"`{name}` must be a keras.Model, got {type(model).__name__}.")


def _check_weight(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number >= 0, got {value!r}.") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0, got {value}.")
    return value


@keras.saving.register_keras_serializable(package="tfmoe")
class Distiller(DistributedBuildMixin, keras.Model):
    """Trains a `student` to match a frozen `teacher` and the labels (`model.fit` ready).

    `call` runs the student only, so `predict`/`evaluate` outputs are the student's
    logits. The loss is computed in `compute_loss` (Keras' `train_step` / `test_step`
    call it), so plain `fit`/`evaluate` work, under `tf.distribute` strategies too:
    the teacher runs in inference mode (`training=False`: no dropout, evaluation
    capacity factor, no auxiliary router losses) and gets no gradients. The teacher is
    frozen (`teacher.trainable = False`), so only the student's weights train and
    the optimizer (weight decay included) never touches the teacher.

    Loss per batch, over the real tokens (weights `w` `[batch, seq]`, see below):

        hard = sum(w * CE(labels, student_logits)) / sum(w)
        soft = T**2 * sum(w * KL(softmax(teacher / T) || softmax(student / T))) / sum(w)
        loss = hard_label_weight * hard + soft_label_weight * soft + student aux losses

    (`soft_loss="cross_entropy"` uses the soft cross-entropy `-sum(p_teacher *
    log p_student)` instead of the KL divergence: same gradients, larger values.)
    Under `tf.distribute` each replica's loss is divided by the number of replicas,
    as Keras does for compiled losses.

    Token weights: `sample_weight` (`[batch, seq]`, or `[batch]` per example) when
    given, times the padding mask of the inputs (`decoder_padding_mask` for
    encoder-decoder inputs, else `padding_mask`) when there is one. Padding therefore
    counts in neither loss nor in the metrics.

    Metrics (also `val_*` in `fit`), all token-weighted over the epoch:
      `loss`: the distillation loss above; `cross_entropy`: the student's own token
      cross-entropy with the labels; `perplexity`: `exp(cross_entropy)`;
      `soft_loss`: the teacher-matching term (`T**2 * KL`, or soft CE);
      `teacher_cross_entropy`: the teacher's token cross-entropy on the same batches.

    Args:
      teacher: trained `keras.Model` (e.g. a sparse `SwitchDecoderLM`); frozen here.
      student: `keras.Model` taking the same inputs and giving logits over the same
        vocabulary (e.g. the dense `SwitchDecoderLM` with the same active FLOPs).
      hard_label_weight: weight of the label cross-entropy (default 0.25).
      soft_label_weight: weight of the teacher-matching term (default 0.75).
      temperature: softmax temperature `T` of the soft term (default 1.0).
      soft_loss: `"kl"` (default) or `"cross_entropy"`.

    Call arguments:
      inputs: the student's inputs, e.g. `{"token_ids": int [batch, seq],
        "padding_mask": [batch, seq]}` for a decoder LM (or the encoder-decoder dict).
      training: passed to the student.

    Returns:
      The student's logits `[batch, seq, vocabulary]`.

    `compute_loss(x, y, y_pred, sample_weight)`: `x` the inputs above, `y` int labels
    `[batch, seq]`, `y_pred` the student logits, `sample_weight` optional
    `[batch, seq]` (or `[batch]`).

    Compile with an optimizer (and optional extra metrics) but no `loss`.

    Raises:
      ValueError: a model that is not a `keras.Model` or is both teacher and student,
        negative / non-finite loss weights (or both zero), `temperature <= 0`, an
        unknown `soft_loss`, or teacher and student with different vocabulary sizes.
    """

    def __init__(
        self,
        teacher,
        student,
        hard_label_weight=0.25,
        soft_label_weight=0.75,
        temperature=1.0,
        soft_loss="kl",
        **kwargs,
    ):
        _check_model("teacher", teacher)
        _check_model("student", student)
        if teacher is student:
            raise ValueError("`teacher` and `student` must be two different models.")
        hard_label_weight = _check_weight("hard_label_weight", hard_label_weight)
        soft_label_weight = _check_weight("soft_label_weight", soft_label_weight)
        if hard_label_weight == 0 and soft_label_weight == 0:
            raise ValueError(
                "`hard_label_weight` and `soft_label_weight` are both 0: nothing to train on."
            )
        try:
            temperature = float(temperature)
        except (TypeError, ValueError):
            raise ValueError(f"`temperature` must be a number > 0, got {temperature!r}.") from None
        if not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"`temperature` must be a finite number > 0, got {temperature}.")
        if soft_loss not in SOFT_LOSSES:
            raise ValueError(f"`soft_loss` must be one of {SOFT_LOSSES}, got {soft_loss!r}.")
        teacher_vocab = _vocabulary_size(teacher)
        student_vocab = _vocabulary_size(student)
        if (
            teacher_vocab is not None
            and student_vocab is not None
            and int(teacher_vocab) != int(student_vocab)
        ):
            raise ValueError(
                f"`student` has vocabulary_size={student_vocab} but `teacher` has "
                f"vocabulary_size={teacher_vocab}: distillation needs the same vocabulary."
            )
        super().__init__(**kwargs)
        self.teacher = teacher
        self.student = student
        _freeze(self.teacher)
        self.hard_label_weight = hard_label_weight
        self.soft_label_weight = soft_label_weight
        self.temperature = temperature
        self.soft_loss = soft_loss
        self.cross_entropy_tracker = keras.metrics.Mean(name="cross_entropy")
        self.perplexity_tracker = keras_hub.metrics.Perplexity(from_logits=True, name="perplexity")
        self.soft_loss_tracker = keras.metrics.Mean(name="soft_loss")
        self.teacher_cross_entropy_tracker = keras.metrics.Mean(name="teacher_cross_entropy")
        if teacher.built and student.built:
            self.built = True

    def build(self, input_shape=None):
        for model in (self.teacher, self.student):
            if not model.built:
                model.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    @property
    def metrics(self):
        # Keras would also collect the teacher's sublayer metrics (its routers' load and
        # dropped fractions, which `TrainingMonitor` would take for the student's):
        # the logs describe the student and the distillation only.
        teacher_metrics = {
            id(m) for layer in sublayers(self.teacher, include_self=True) for m in layer.metrics
        }
        return [m for m in super().metrics if id(m) not in teacher_metrics]

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """`keras.Model.compile` without `loss` (the distillation loss is built in)."""
        if loss is not None:
            raise ValueError(
                "`loss` must be None: the Distiller computes its own loss "
                "(set `hard_label_weight`, `soft_label_weight`, `temperature`)."
            )
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        """Re-compiles a loaded `.keras` Distiller (optimizer state included)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # Loss ----------------------------------------------------------------------------

    @staticmethod
    def token_weights(x, y, sample_weight=None):
        """float32 `[batch, seq]` weights of the label positions (0 = padding).

        `sample_weight` (`[batch, seq]` or `[batch]`) times the inputs' padding mask
        (`decoder_padding_mask`, else `padding_mask`); ones where neither is given.
        """
        weights = ops.ones(ops.shape(y), dtype="float32")
        if isinstance(x, dict):
            for key in _MASK_KEYS:
                if x.get(key) is not None:
                    weights = weights * ops.cast(x[key], "float32")
                    break
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, "float32")
            while len(sample_weight.shape) < len(weights.shape):
                sample_weight = ops.expand_dims(sample_weight, -1)
            weights = weights * sample_weight
        return weights

    def distillation_losses(self, y, student_logits, teacher_logits, weights):
        """Per-batch terms: `{"hard", "soft", "teacher_hard", "tokens"}` (float32 scalars).

        `y` int `[batch, seq]`; logits `[batch, seq, vocabulary]`; `weights` as
        `token_weights`. Each term is a token-weighted mean (0 when `weights` is all 0).
        """
        student_logits = ops.cast(student_logits, "float32")
        teacher_logits = ops.stop_gradient(ops.cast(teacher_logits, "float32"))
        tokens = ops.sum(weights)

        def mean(values):
            return ops.divide_no_nan(ops.sum(values * weights), tokens)

        hard = mean(
            keras.losses.sparse_categorical_crossentropy(y, student_logits, from_logits=True)
        )
        teacher_hard = mean(
            keras.losses.sparse_categorical_crossentropy(y, teacher_logits, from_logits=True)
        )
        t = self.temperature
        student_log_probs = ops.log_softmax(student_logits / t, axis=-1)
        teacher_log_probs = ops.log_softmax(teacher_logits / t, axis=-1)
        teacher_probs = ops.exp(teacher_log_probs)
        if self.soft_loss == "kl":
            per_token = ops.sum(teacher_probs * (teacher_log_probs - student_log_probs), axis=-1)
        else:
            per_token = -ops.sum(teacher_probs * student_log_probs, axis=-1)
        soft = (t * t) * mean(per_token)
        return {"hard": hard, "soft": soft, "teacher_hard": teacher_hard, "tokens": tokens}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y is None:
            raise ValueError("The Distiller needs labels `y` (the next tokens / targets).")
        if y_pred is None:
            y_pred = self.student(x, training=training)
        teacher_logits = self.teacher(x, training=False)
        if (
            teacher_logits.shape[-1] is not None
            and y_pred.shape[-1] is not None
            and teacher_logits.shape[-1] != y_pred.shape[-1]
        ):
            raise ValueError(
                f"`student` logits have {y_pred.shape[-1]} classes, `teacher` logits "
                f"{teacher_logits.shape[-1]}."
            )
        weights = self.token_weights(x, y, sample_weight)
        terms = self.distillation_losses(y, y_pred, teacher_logits, weights)
        loss = self.hard_label_weight * terms["hard"] + self.soft_label_weight * terms["soft"]

        tokens = terms["tokens"]
        self.cross_entropy_tracker.update_state(terms["hard"], sample_weight=tokens)
        self.perplexity_tracker.update_state(y, y_pred, sample_weight=weights)
        self.soft_loss_tracker.update_state(terms["soft"], sample_weight=tokens)
        self.teacher_cross_entropy_tracker.update_state(terms["teacher_hard"], sample_weight=tokens)

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:  # as keras.losses do: gradients are summed over replicas
            loss = loss / replicas
        # The student's own auxiliary losses (add_loss, regularizers); the teacher runs
        # in inference mode and adds none.
        for extra in self.losses:
            loss = loss + self._aggregate_additional_loss(extra)
        return loss

    # Config --------------------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(
            teacher=keras.saving.serialize_keras_object(self.teacher),
            student=keras.saving.serialize_keras_object(self.student),
            hard_label_weight=self.hard_label_weight,
            soft_label_weight=self.soft_label_weight,
            temperature=self.temperature,
            soft_loss=self.soft_loss,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        teacher = keras.saving.deserialize_keras_object(config.pop("teacher"))
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        return cls(teacher, student, **config)


# Student initialisation ------------------------------------------------------------


def _named_weights(layer, prefix="", moe_key=None, out=None, seen=None):
    """`[(key, variable, moe_key)]` of `layer`'s weights, keys relative to `layer`.

    Keys join the sublayer names (`backbone/decoder/block_1/self_attention/q`; a
    keras-hub task's backbone is `backbone` whatever its own name), so two models of
    the same architecture get the same keys whatever their own names. A variable
    shared by several sublayers (the token embedding a task also uses for its logits)
    is listed once, under its first key. `moe_key` is the key of the enclosing MoE
    layer (None outside one).
    """
    out = [] if out is None else out
    seen = set() if seen is None else seen
    children = sublayers(layer, recursive=False)
    in_children = {id(v) for child in children for v in child.weights}
    for variable in layer.weights:
        if id(variable) in in_children or id(variable) in seen or "seed_generator" in variable.name:
            continue
        seen.add(id(variable))
        out.append((f"{prefix}{variable.name}", variable, moe_key))
    for child in children:
        name = "backbone" if child is getattr(layer, "backbone", None) else child.name
        key = f"{prefix}{name}"
        child_moe = moe_key if moe_key is not None else (key if _is_moe_layer(child) else None)
        _named_weights(child, key + "/", child_moe, out, seen)
    return out


def _parent_key(key):
    return key.rsplit("/", 1)[0] if "/" in key else ""


def init_student_from_teacher(student, teacher, expert_init="none", strict=True):
    """Copies every non-expert weight of `teacher` into `student` (values, in place).

    Weights are matched by their position in the model (sublayer names relative to
    the model, e.g. `backbone/decoder/block_0/self_attention/q`), so a dense `SwitchDecoderLM`
    / `SwitchTransformer` student of the teacher's shape receives the token embedding
    (and untied output projection), relative position biases, attention and
    cross-attention projections, every layer norm, and the dense feed-forward networks
    of the layers that are dense in the teacher. Expert weights (routers and experts)
    are never copied. At the teacher's sparse positions the student's feed-forward
    network (same key, e.g. `backbone/decoder/block_1/feed_forward/wi_0`)
    is:

    - `expert_init="none"` (default, the paper: "initializing the dense model with
      the non-expert weights"): left as initialised;
    - `expert_init="mean"`: set to the mean over the teacher's experts of the same
      weight (`[E, in, out]` -> `[in, out]`).

    Args:
      student: the model to initialise (built).
      teacher: the trained (sparse) model (built).
      expert_init: `"none"` or `"mean"`, see above.
      strict: raise on any weight that cannot be matched (default). With False the
        matching weights are copied and the others only reported.

    Returns:
      dict of key lists: `copied` (student weights set from the teacher),
      `from_experts` (student feed-forward weights at sparse positions, set from the
      expert mean), `kept` (student weights left as initialised: feed-forward weights
      at sparse positions with `expert_init="none"`, the student's own expert weights),
      `teacher_expert_weights` (teacher router/expert weights, not copied),
      `mismatched` (`"key: student shape vs teacher shape"`), `unmatched_student`,
      `unmatched_teacher` (non-expert weights without a counterpart).

    Raises:
      ValueError: unknown `expert_init`; with `strict`, weights that could not be
        matched: the message lists each one with its shapes.
    """
    _check_model("student", student)
    _check_model("teacher", teacher)
    if expert_init not in EXPERT_INITS:
        raise ValueError(f"`expert_init` must be one of {EXPERT_INITS}, got {expert_init!r}.")
    for name, model in (("student", student), ("teacher", teacher)):
        if not model.built:
            raise ValueError(f"`{name}` is not built: call it once (or `build()`) first.")
    teacher_weights = {key: (v, moe) for key, v, moe in _named_weights(teacher)}
    teacher_moe_layers = {moe for _, moe in teacher_weights.values() if moe is not None}
    report = {
        k: []
        for k in (
            "copied",
            "from_experts",
            "kept",
            "teacher_expert_weights",
            "mismatched",
            "unmatched_student",
            "unmatched_teacher",
        )
    }
    used = set()
    assignments = []
    for key, variable, student_moe in _named_weights(student):
        match = teacher_weights.get(key)
        if match is not None and match[1] is None and student_moe is None:
            used.add(key)
            source = match[0]
            if tuple(source.shape) != tuple(variable.shape):
                report["mismatched"].append(
                    f"{key}: student {tuple(variable.shape)} vs teacher {tuple(source.shape)}"
                )
                continue
            assignments.append((variable, keras.ops.convert_to_numpy(source)))
            report["copied"].append(key)
        elif _parent_key(key) in teacher_moe_layers and student_moe is None:
            # A dense feed-forward weight where the teacher has experts.
            name = key.rsplit("/", 1)[-1]
            source_key = f"{_parent_key(key)}/experts/{name}"
            source = teacher_weights.get(source_key)
            if source is not None:  # experts as [E, in, out], the dense kernel's layout
                source = keras.ops.convert_to_numpy(source[0])
                if ExpertFeedForward.stored_out_in(name):
                    source = np.swapaxes(source, 1, 2)
            if expert_init == "none":
                report["kept"].append(key)
            elif source is None or tuple(source.shape[1:]) != tuple(variable.shape):
                shape = None if source is None else tuple(source.shape)
                report["mismatched"].append(
                    f"{key}: student {tuple(variable.shape)} vs teacher experts "
                    f"{source_key} (as [E, in, out]) {shape}"
                )
            else:
                assignments.append((variable, source.mean(axis=0)))
                report["from_experts"].append(key)
        elif student_moe is not None:
            report["kept"].append(key)  # the student's own experts / router
        else:
            report["unmatched_student"].append(f"{key} {tuple(variable.shape)}")
    for key, (variable, moe) in teacher_weights.items():
        if moe is not None:
            report["teacher_expert_weights"].append(key)
        elif key not in used:
            report["unmatched_teacher"].append(f"{key} {tuple(variable.shape)}")
    problems = (
        report["mismatched"]
        + [f"{k}: no teacher weight" for k in report["unmatched_student"]]
        + [f"{k}: teacher weight with no place in the student" for k in report["unmatched_teacher"]]
    )
    if problems and strict:
        raise ValueError(
            f"init_student_from_teacher: {len(problems)} weight(s) could not be matched "
            f"(student {student.name!r}, teacher {teacher.name!r}): " + "; ".join(problems)
        )
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype) if hasattr(value, "astype") else value)
    return report
