"""archer_lite's text environments, registered with gymnasium.

``make_env("twenty_questions_subset")`` and ``gymnasium.make("archer_lite/TwentyQuestionsSubset-v0")``
build the same environment. :data:`ENVS` lists every name; an unknown name raises an error that
lists them.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import gymnasium

from archer_lite.envs.base import EpisodeFinishedError, TextEnv, clean_utterance, normalize_utterance


@dataclass(frozen=True)
class EnvSpec:
    """One registered environment.

    Attributes:
        name: the short name used by the CLI and configs (``twenty_questions_subset``).
        gym_id: the gymnasium id (``archer_lite/TwentyQuestionsSubset-v0``).
        entry_point: ``module:Class`` of the env.
        kwargs: constructor keyword arguments this name fixes.
        family: which shipped tokenizer the env uses (envs sharing text share a tokenizer).
    """

    name: str
    gym_id: str
    entry_point: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    family: str = ""


ENVS: dict[str, EnvSpec] = {
    spec.name: spec
    for spec in [
        EnvSpec("twenty_questions", "archer_lite/TwentyQuestions-v0",
                "archer_lite.envs.twenty_questions:TwentyQuestions", {}, "twenty_questions"),
        EnvSpec("twenty_questions_subset", "archer_lite/TwentyQuestionsSubset-v0",
                "archer_lite.envs.twenty_questions:TwentyQuestions", {"subset": True},
                "twenty_questions"),
        EnvSpec("guess_my_city", "archer_lite/GuessMyCity-v0",
                "archer_lite.envs.guess_my_city:GuessMyCity", {}, "guess_my_city"),
        EnvSpec("detective", "archer_lite/Detective-v0",
                "archer_lite.envs.detective:Detective", {}, "detective"),
        EnvSpec("minishop", "archer_lite/MiniShop-v0",
                "archer_lite.envs.minishop:MiniShop", {}, "minishop"),
        EnvSpec("corridor", "archer_lite/Corridor-v0",
                "archer_lite.envs.corridor:Corridor", {}, "corridor"),
    ]
}


def _register_all() -> None:
    for spec in ENVS.values():
        if spec.gym_id not in gymnasium.registry:
            gymnasium.register(id=spec.gym_id, entry_point=spec.entry_point, kwargs=spec.kwargs)


def env_spec(name: str) -> EnvSpec:
    """Look up a registered env by short name or gymnasium id; unknown names list the choices."""
    for spec in ENVS.values():
        short_gym_name = spec.gym_id.split("/")[1].rsplit("-v", 1)[0]  # "TwentyQuestions"
        if name in (spec.name, spec.gym_id, short_gym_name):
            return spec
    choices = ", ".join(ENVS)
    raise KeyError(f"Unknown environment {name!r}. Available: {choices} "
                   f"(or their gymnasium ids, e.g. {ENVS['twenty_questions'].gym_id!r}).")


def env_class(name: str) -> type[TextEnv]:
    module, cls = env_spec(name).entry_point.split(":")
    return getattr(importlib.import_module(module), cls)


def make_env(name: str, **kwargs: Any) -> TextEnv:
    """Build an environment by short name (or gymnasium id); ``kwargs`` override the spec's.

    Returns the bare env (no gymnasium wrappers), so ``env.expert_action`` and friends are
    reachable; ``gymnasium.make(gym_id)`` gives the wrapped one.
    """
    spec = env_spec(name)
    return env_class(name)(**{**spec.kwargs, **kwargs})


_register_all()

__all__ = ["ENVS", "EnvSpec", "EpisodeFinishedError", "TextEnv", "clean_utterance", "env_class",
           "env_spec", "make_env", "normalize_utterance"]
