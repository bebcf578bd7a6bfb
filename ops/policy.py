"""The versioned policy format (pydantic, strict) and its migrations.

Magnitudes are normalised to [0, 1] everywhere (see :mod:`ops.catalogue`):

* torchvision's bin ``b`` of ``num_bins`` is ``magnitude = b / (num_bins - 1)``; RandAugment(2, 9)
  with torchvision's default 31 bins is therefore ``m = 0.3``, with ``num_magnitude_bins=11``
  it is ``m = 0.9``.
* timm's level ``L`` (``rand-m9``; ``_LEVEL_DENOM = 10``) is ``m = L / 10``, and timm's ``mstd``
  is ``m_std * 10``. The preset ``randaugment-2-9`` uses the paper's / timm's scale: ``m = 0.9``.
* Legacy (schema_version 0) AutoAugment tables use bins 0..9: ``magnitude = bin / 9``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ops.catalogue import OPS, STANDARD_OPS, get_op

SCHEMA_VERSION: Literal[1] = 1
Unit = Annotated[float, Field(ge=0.0, le=1.0)]
_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)
#: timm's default probability of applying each RandAugment op.
TIMM_DEFAULT_P = 0.5
#: The text ops of kind ``text`` (their functions are :data:`ops.text.TEXT_OPS`).
TextOpName = Literal["SynonymReplacement", "RandomInsertion", "RandomSwap", "RandomDeletion"]
#: A text op's rate (the fraction of words it changes) at magnitude 1: the largest of EDA's
#: sweep. ``rate = magnitude * TEXT_RATE_MAX``; EDA's default rate 0.1 is magnitude 0.2.
TEXT_RATE_MAX = 0.5


def _known_op(name: str) -> str:
    if name not in OPS:
        raise ValueError(f"unknown op {name!r}; known ops: {', '.join(OPS)}")
    return name


class OpStep(BaseModel):
    """One op of a sub-policy: applied with probability ``p`` at ``magnitude`` in [0, 1]."""

    model_config = _STRICT
    op: str
    p: Unit
    magnitude: Unit = 0.0

    @field_validator("op")
    @classmethod
    def _check_op(cls, value: str) -> str:
        return _known_op(value)


class BaseAugment(BaseModel):
    """Per-sample base augmentation applied before the policy ops.

    Attributes:
        crop_padding: Random crop after zero-padding by this many pixels (0 disables).
        hflip: Random left-right flip with probability 0.5.
        vflip: Random top-bottom flip with probability 0.5.
    """

    model_config = _STRICT
    crop_padding: Annotated[int, Field(ge=0, le=512)] = 0
    hflip: bool = False
    vflip: bool = False


class MixConfig(BaseModel):
    """Batch-level mixing, applied by :func:`ops.mix.mix_batch`.

    Attributes:
        mixup_alpha: Beta(alpha, alpha) for MixUp; 0 disables.
        cutmix_alpha: Beta(alpha, alpha) for CutMix; 0 disables.
        cutmix_prob: Probability that a sample uses CutMix. With MixUp also on, the other
            samples use MixUp; with MixUp off, the other samples are not mixed.
        cutout: Side of the Cutout square: 0 disables, values below 1 are a fraction of the
            shorter image side, values of 1 or more are pixels.
        label_smoothing: Smoothing folded into the soft targets.
    """

    model_config = _STRICT
    mixup_alpha: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0
    cutmix_alpha: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0
    cutmix_prob: Unit = 1.0
    cutout: Annotated[float, Field(ge=0.0, le=4096.0)] = 0.0
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0

    @property
    def active(self) -> bool:
        """Whether mixing changes anything at all."""
        return any((self.mixup_alpha, self.cutmix_alpha, self.cutout, self.label_smoothing))


class TextOpStep(BaseModel):
    """One text op at ``magnitude`` in [0, 1] (see :data:`TEXT_RATE_MAX` and :mod:`ops.text`)."""

    model_config = _STRICT
    op: TextOpName
    magnitude: Unit

    @property
    def rate(self) -> float:
        """The fraction of words the op changes (EDA's alpha)."""
        return self.magnitude * TEXT_RATE_MAX


class TextAugment(BaseModel):
    """EDA-style augmentation of a ``text`` policy.

    Attributes:
        ops: the text ops and their magnitudes; each augmented copy of a sentence goes through
            one of the ops with a non-zero magnitude, drawn uniformly.
        copies: augmented copies trained beside each original sentence.
    """

    model_config = _STRICT
    ops: list[TextOpStep] = Field(min_length=1)
    copies: Annotated[int, Field(ge=1, le=32)] = 4

    @field_validator("ops")
    @classmethod
    def _check_ops(cls, value: list[TextOpStep]) -> list[TextOpStep]:
        names = [step.op for step in value]
        if len(set(names)) != len(names):
            raise ValueError("text ops must not repeat an op")
        return value


class Policy(BaseModel):
    """An augmentation policy (schema_version 1).

    Attributes:
        kind: ``subpolicies`` (one sub-policy drawn per image, each step applied with its
            ``p``), ``randaugment`` (``n`` ops drawn uniformly from ``ops`` at magnitude ``m``,
            plus Gaussian noise of std ``m_std``, each applied with probability ``p``),
            ``trivialaugment`` (one op from ``ops`` at a uniform magnitude bin of 31), ``text``
            (EDA-style text ops in ``text``; no image field applies) or ``none``.
        ops: Op set of randaugment/trivialaugment; None means :data:`STANDARD_OPS`.
        wide: Use TrivialAugmentWide's ranges (trivialaugment and randaugment).
        text: The text ops and copies of kind ``text`` (only that kind takes it).
    """

    model_config = _STRICT
    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["subpolicies", "randaugment", "trivialaugment", "text", "none"]
    sub_policies: list[list[OpStep]] = Field(default_factory=list)
    n: Annotated[int, Field(ge=1, le=16)] = 2
    m: Unit = 0.9
    m_std: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    p: Unit = 1.0
    ops: list[str] | None = None
    wide: bool = False
    base: BaseAugment = Field(default_factory=BaseAugment)
    mix: MixConfig = Field(default_factory=MixConfig)
    text: TextAugment | None = None

    @field_validator("ops")
    @classmethod
    def _check_ops(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("ops must name at least one op (or be null for the standard set)")
        for name in value:
            _known_op(name)
        if len(set(value)) != len(value):
            raise ValueError("ops must not repeat an op")
        return value

    @field_validator("sub_policies")
    @classmethod
    def _check_sub_policies(cls, value: list[list[OpStep]]) -> list[list[OpStep]]:
        for index, sub in enumerate(value):
            if not sub:
                raise ValueError(f"sub-policy {index} is empty; give it at least one op")
        return value

    @model_validator(mode="after")
    def _check_kind(self) -> Policy:
        if self.kind == "subpolicies" and not self.sub_policies:
            raise ValueError("sub_policies: kind 'subpolicies' needs at least one sub-policy")
        if self.kind != "subpolicies" and self.sub_policies:
            raise ValueError(f"sub_policies: only kind 'subpolicies' takes them, not {self.kind!r}")
        if self.kind not in ("randaugment", "trivialaugment") and self.ops is not None:
            raise ValueError(f"ops: kind {self.kind!r} takes no op set")
        if (self.kind == "text") != (self.text is not None):
            raise ValueError("text: kind 'text' needs it and no other kind takes it")
        if self.kind == "text" and (self.base != BaseAugment() or self.mix != MixConfig()):
            raise ValueError("base, mix: kind 'text' takes no image augmentation")
        return self

    @property
    def op_set(self) -> tuple[str, ...]:
        """The op names this policy can draw, in a fixed order."""
        if self.kind == "subpolicies":
            return tuple(dict.fromkeys(step.op for sub in self.sub_policies for step in sub))
        if self.kind in ("randaugment", "trivialaugment"):
            return tuple(self.ops) if self.ops is not None else STANDARD_OPS
        return ()

    @classmethod
    def from_timm(cls, config: str) -> Policy:
        """Parse a timm RandAugment string such as ``rand-m9-n2-mstd0.5``.

        Keys: ``m`` (level of 10), ``n``, ``mstd`` (level units), ``p``. Absent ``p`` means
        timm's default 0.5. The op set is :data:`STANDARD_OPS` with this library's ranges.

        Raises:
            ValueError: For another transform family, an unknown or unsupported key.
        """
        parts = config.strip().split("-")
        if parts[0] != "rand":
            raise ValueError(f"timm config {config!r}: only 'rand-...' strings are supported")
        values: dict[str, Any] = {"kind": "randaugment", "p": TIMM_DEFAULT_P}
        for part in parts[1:]:
            match = re.fullmatch(r"([a-z]+)(\d+(?:\.\d+)?)", part)
            if match is None:
                raise ValueError(f"timm config {config!r}: cannot read part {part!r}")
            key, raw = match.groups()
            if key == "m":
                values["m"] = float(raw) / 10.0
            elif key == "n":
                values["n"] = int(float(raw))
            elif key == "mstd":
                if float(raw) > 10:
                    raise ValueError(f"timm config {config!r}: mstd above 10 is not supported")
                values["m_std"] = float(raw) / 10.0
            elif key == "p":
                values["p"] = float(raw)
            else:
                raise ValueError(f"timm config {config!r}: unsupported key {key!r}")
        return cls.model_validate(values)

    def to_timm(self) -> str:
        """Write this randaugment policy as a timm string (``rand-m9-n2-mstd0.5``).

        The string carries n, m, mstd and p only: timm applies its own op list and ranges.

        Raises:
            ValueError: When the policy is not a standard-op, standard-range randaugment policy or
                its magnitude is not a whole timm level (tenths).
        """
        if self.kind != "randaugment":
            raise ValueError(f"kind {self.kind!r} has no timm config string; only randaugment")
        if self.op_set != STANDARD_OPS or self.wide:
            raise ValueError("timm strings carry no op set or wide ranges; use the standard ops")
        level = round(self.m * 10)
        if not math.isclose(self.m * 10, level, abs_tol=1e-9):
            raise ValueError(f"m={self.m} is not a whole timm level (a multiple of 0.1)")
        text = f"rand-m{level}-n{self.n}"
        if self.m_std:
            text += f"-mstd{self.m_std * 10:.6g}"
        if self.p != TIMM_DEFAULT_P:
            text += f"-p{self.p:.6g}"
        return text

    def require_image(self, user: str) -> None:
        """Refuse a ``text`` policy where images are augmented (``user`` names the caller).

        Raises:
            ValueError: for kind ``text``, naming the text applier and exporter to use instead.
        """
        if self.kind == "text":
            raise ValueError(
                f"{user} augments images, and a 'text' policy augments sentences: use "
                "ops.text.TextAugmenter, or ops.text_export.to_text_snippet for plain Python"
            )

    def describe(self) -> list[str]:
        """Describe the policy in words, one line per sub-policy or setting."""
        if self.kind == "none":
            lines = ["No policy ops."]
        elif self.text is not None:
            lines = _describe_text(self.text)
        elif self.kind == "subpolicies":
            lines = [f"One of {len(self.sub_policies)} sub-policies drawn uniformly per image:"]
            for index, sub in enumerate(self.sub_policies, start=1):
                lines.append(f"  {index}. " + ", then ".join(_describe_step(s) for s in sub))
        else:
            ranges = "wide" if self.wide else "standard"
            if self.kind == "randaugment":
                noise = f" +- N(0, {self.m_std:g})" if self.m_std else ""
                lines = [
                    f"RandAugment: {self.n} ops per image drawn uniformly, each applied with "
                    f"probability {self.p:g} at magnitude {self.m:g}{noise} ({ranges} ranges)."
                ]
            else:
                lines = [
                    f"TrivialAugment: one op per image at a uniform magnitude ({ranges} ranges)."
                ]
            lines.append(f"  Ops: {', '.join(self.op_set)}.")
        base = self.base
        parts = (
            [f"random crop with {base.crop_padding} px zero padding"] if base.crop_padding else []
        )
        parts += [
            name
            for name, on in (("horizontal flip", base.hflip), ("vertical flip", base.vflip))
            if on
        ]
        if parts:
            lines.append("Base: " + ", ".join(parts) + ".")
        mix = self.mix
        if mix.active:
            lines.append(
                f"Mix: MixUp alpha {mix.mixup_alpha:g}, CutMix alpha {mix.cutmix_alpha:g} "
                f"(p={mix.cutmix_prob:g}), Cutout {mix.cutout:g}, label smoothing {mix.label_smoothing:g}."
            )
        return lines


def _describe_text(text: TextAugment) -> list[str]:
    steps = ", ".join(f"{s.op} (alpha={s.rate:.3g})" for s in text.ops if s.magnitude)
    return [
        f"Text: {text.copies} augmented copies per sentence, each by one op drawn uniformly.",
        f"  Ops: {steps or 'none at a non-zero rate'}.",
    ]


def _describe_step(step: OpStep) -> str:
    if not OPS[step.op].has_magnitude:
        return f"{step.op} (p={step.p:g})"
    return f"{step.op} (p={step.p:g}, magnitude={step.magnitude:.3g})"


def _migrate_v0(data: Any) -> dict[str, Any]:
    """Schema 0: AutoAugment tuple lists ``[[["Rotate", 0.7, 4], ...], ...]``, bins 0..9."""
    table = data.get("sub_policies") if isinstance(data, dict) else data
    if not isinstance(table, list) or not table:
        raise ValueError("schema_version 0 policies need a non-empty list of sub-policies")
    subs = []
    for index, sub in enumerate(table):
        if not isinstance(sub, list):
            raise ValueError(f"sub_policies.{index}: expected a list of [op, p, bin] entries")
        steps = []
        for entry in sub:
            if not isinstance(entry, list | tuple) or len(entry) != 3:
                raise ValueError(f"sub_policies.{index}: bad entry {entry!r}, want [op, p, bin]")
            name, prob, level = entry
            get_op(name)
            magnitude = 0.0 if level is None else float(level) / 9.0
            if not 0.0 <= magnitude <= 1.0:
                raise ValueError(f"sub_policies.{index}: bin {level!r} is outside 0..9")
            steps.append({"op": name, "p": float(prob), "magnitude": magnitude})
        subs.append(steps)
    return {"schema_version": 1, "kind": "subpolicies", "sub_policies": subs}


def load_policy(data: dict[str, Any] | list[Any] | str | bytes) -> Policy:
    """Load a policy of any schema version from a dict, a list (schema 0) or JSON text.

    Raises:
        ValueError: For unreadable JSON or an unknown schema version.
        pydantic.ValidationError: For an invalid policy (the message names the field).
    """
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ValueError(f"policy is not valid JSON: {exc}") from exc
    if isinstance(data, list):
        data = _migrate_v0(data)
    elif not isinstance(data, dict):
        raise ValueError(f"a policy must be a JSON object, got {type(data).__name__}")
    version = data.get("schema_version", 0 if "kind" not in data else SCHEMA_VERSION)
    if version == 0:
        data = _migrate_v0(data)
    elif version != SCHEMA_VERSION:
        raise ValueError(f"schema_version {version!r} is not supported (latest is 1)")
    return Policy.model_validate(data)
