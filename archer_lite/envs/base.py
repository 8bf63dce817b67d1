"""The shared shape of every archer_lite text environment.

An ArCHer *state* is the whole dialogue so far, as text; an *action* is one utterance (a line of
text). Every environment here is a :class:`gymnasium.Env` whose observation is that history and
whose action is a string::

    obs, info = env.reset(seed=0)          # obs: the opening text (task + nothing asked yet)
    obs, reward, terminated, truncated, info = env.step("Is it an animal?")

Subclasses implement three small methods (:meth:`TextEnv._start`, :meth:`TextEnv._respond`,
:meth:`TextEnv._intro`); the base class owns the plumbing every env needs the same way:

* the transcript (``obs`` = intro + one ``"<utterance>\\n<response>\\n"`` block per turn),
* bad input (non-string, empty, over ``MAX_UTTERANCE_CHARS``, non-ASCII) -> the env's invalid
  answer, costing a turn, never an exception,
* the turn limit (``truncated``), and a clear error for stepping a finished episode,
* ``info["turns"]``: the list of ``(utterance, response)`` pairs, which demonstrators and widgets
  read. Hidden facts (the word, the city, the instruction's target) live in ``info`` too, never in
  ``obs``.
"""
from __future__ import annotations

import re
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

MAX_UTTERANCE_CHARS = 300
"""Utterances longer than this are answered as invalid (a 100 kB input costs one turn, no more)."""

_ASCII_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")


class EpisodeFinishedError(RuntimeError):
    """Raised by ``step`` after the episode ended; the fix is to call ``reset()`` first."""


def normalize_utterance(text: str) -> str:
    """Lower-case, drop punctuation except ``[]`` and ``-``, collapse whitespace.

    Oracles parse this normal form, so "Is it a dog ?" and "is it a DOG" read the same.
    """
    text = text.lower().replace("'", "")
    text = re.sub(r"[^a-z0-9\[\]\-$ ]+", " ", text)
    return " ".join(text.split())


class TextEnv(gymnasium.Env):
    """Base class: a multi-turn text environment with a whole-history text observation.

    Attributes subclasses set:
        max_turns: episode length cap; reaching it sets ``truncated``.
        invalid_response: what the env answers to an utterance it cannot use.
    """

    metadata = {"render_modes": ["ansi"]}
    max_turns: int = 20
    invalid_response: str = "Invalid action."

    def __init__(self, render_mode: str | None = None):
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode={render_mode!r} is not supported; use None or 'ansi'.")
        self.render_mode = render_mode
        self.observation_space = spaces.Text(max_length=100_000, charset=_charset())
        self.action_space = spaces.Text(max_length=MAX_UTTERANCE_CHARS, charset=_charset())
        self.turns: list[tuple[str, str]] = []
        self._done = True
        self._intro_text = ""

    # ----- what subclasses implement ------------------------------------------------------
    def _start(self, rng: np.random.Generator, options: dict[str, Any]) -> dict[str, Any]:
        """Draw the hidden episode (word, city, instruction...) and return its info entries."""
        raise NotImplementedError

    def _intro(self) -> str:
        """The opening text of the observation (task statement; no hidden facts)."""
        raise NotImplementedError

    def _respond(self, utterance: str) -> tuple[str, float, bool, dict[str, Any]]:
        """Answer one valid-looking utterance: ``(response, reward, terminated, extra_info)``.

        Receives the raw (stripped, single-line, ASCII) utterance; returns
        ``self.invalid_response`` itself for utterances it cannot parse.
        """
        raise NotImplementedError

    def _invalid(self) -> tuple[str, float, bool, dict[str, Any]]:
        """Outcome of an unusable utterance; default: the invalid answer and -1."""
        return self.invalid_response, -1.0, False, {}

    # ----- gymnasium API -------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.turns = []
        self._done = False
        self._hidden = self._start(self.np_random, dict(options or {}))
        self._intro_text = self._intro()
        return self.observation(), self._info(invalid=False)

    def step(self, action: str):
        if self._done:
            raise EpisodeFinishedError(
                f"{type(self).__name__}: the episode has ended; call env.reset() before step()."
            )
        utterance = clean_utterance(action)
        if utterance is None:
            response, reward, terminated, extra = self._invalid()
            invalid = True
        else:
            response, reward, terminated, extra = self._respond(utterance)
            invalid = response == self.invalid_response
        shown = utterance if utterance is not None else _shown_invalid(action)
        self.turns.append((shown, response))
        truncated = not terminated and len(self.turns) >= self.max_turns
        self._done = terminated or truncated
        info = self._info(invalid=invalid)
        info.update(extra)
        return self.observation(), float(reward), bool(terminated), bool(truncated), info

    def observation(self) -> str:
        """The ArCHer state: intro followed by every ``utterance\\nresponse\\n`` so far."""
        return self._intro_text + "".join(f"{u}\n{r}\n" for u, r in self.turns)

    def render(self):
        return self.observation() if self.render_mode == "ansi" else None

    @property
    def done(self) -> bool:
        return self._done

    def _info(self, invalid: bool) -> dict[str, Any]:
        info = dict(self._hidden)
        info.update(turn=len(self.turns), turns=list(self.turns), invalid=invalid)
        return info


def clean_utterance(action: Any) -> str | None:
    """Return the utterance as one stripped ASCII line, or ``None`` if it is unusable.

    Unusable: not a string, empty, longer than ``MAX_UTTERANCE_CHARS``, or with characters
    outside printable ASCII (a newline inside an utterance would forge an env response).
    """
    if not isinstance(action, str):
        return None
    text = action.strip()
    if not text or len(text) > MAX_UTTERANCE_CHARS or not _ASCII_PRINTABLE.match(text):
        return None
    return text


def _shown_invalid(action: Any) -> str:
    """How an unusable utterance appears in the transcript: printable, one line, short."""
    if not isinstance(action, str):
        return "<invalid>"
    text = re.sub(r"[^\x20-\x7e]+", " ", action).strip()[:80]
    return text or "<empty>"


def _charset() -> str:
    return "".join(chr(c) for c in range(0x20, 0x7F)) + "\n"
