"""Detective: a tiny hand-written text adventure, in the spirit of the ArCHer paper's Detective game.

Lady Ashworth's pearls were stolen. The player walks a seven-room house, picks up clues,
questions three suspects and finally accuses one of them. The story is fixed (the seed changes
nothing), so every difference between two episodes comes from the player.

Map (``data/detective_world.json``)::

                 bedroom
                    | up / down
      study         |
        | n / s     |
      library --- hall --- kitchen
                    |          | down / up
                  garden     cellar

Who and what: the butler waits in the hall, the cook in the kitchen, the gardener (the thief) in
the garden. A brass key hangs in the kitchen; it opens the study drawer, which holds a ledger. A
torn letter lies in the library grate and a muddy boot in the cellar.

Commands (parsed from :func:`normalize_utterance`; "the", "a", "an", "to", "at" are ignored)::

    go <direction | adjacent room>   take <item>    examine <thing>    open <thing>
    ask <person> [about <clue you hold>]            accuse <person present>
    look                             inventory

Anything else, or anything impossible right now, is answered ``"You can't do that."``: reward 0,
one turn spent. Every other response ends with an ``Actions: ...`` line listing the valid actions
(``look`` and ``inventory`` always work and are not listed).

Scoring (reward = score delta; each event pays once)::

    take key 1, take letter 2, take boot 2, open drawer 2, take ledger 2,
    examine safe 1, examine flowerbed 1,
    ask butler about letter 2, ask cook about boot 2, ask gardener about ledger 1   (sum 16)
    accuse gardener, holding the evidence  +10, success, episode ends
    accuse gardener too early, or anyone else  -5, episode ends

The evidence is: letter, boot and ledger taken, the butler asked about the letter and the cook
about the boot. The maximum return is 26; the expert needs 22 moves, the turn limit is 50.

The demonstrators read one table: :func:`expert_policy` maps every reachable state to its first
move on a shortest path to the maximum score (a backward BFS over the state graph, so the expert
recovers from wherever a noisy player left it).
"""
from __future__ import annotations

import functools
import json
from collections import defaultdict, deque
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from archer_lite.envs.base import TextEnv, normalize_utterance
from archer_lite.paths import data_path

_FILLER_WORDS = frozenset({"the", "a", "an", "to", "at"})


# ----- the world (read-only, shared by every env) ------------------------------------------------
@dataclass(frozen=True)
class World:
    """The story, as loaded from ``data/detective_world.json`` (see the module docstring).

    Attributes:
        title, case: the case's name and statement (shown in the intro).
        start: the room the detective starts in.
        culprit: the suspect whose accusation (with evidence) solves the case.
        rooms: room -> {description, exits {direction: room}, scenery {thing: text}, people}.
        items: item -> {room, container (optional), clue, here, take, examine}.
        containers: container -> {room, key, locked, open, examine_open}.
        suspects: suspect -> {examine, ask, default, about {clue: answer}}.
        scores: canonical command -> points, paid the first time the command succeeds.
        evidence: the scoring commands that must be done before accusing the culprit.
        accusation: {reward, penalty, solved, premature, wrong}.
    """

    title: str
    case: str
    start: str
    culprit: str
    rooms: dict[str, dict[str, Any]]
    items: dict[str, dict[str, Any]]
    containers: dict[str, dict[str, Any]]
    suspects: dict[str, dict[str, Any]]
    scores: dict[str, int]
    evidence: tuple[str, ...]
    accusation: dict[str, Any]
    location: dict[str, str] = field(default_factory=dict)
    """suspect -> the room they stay in (derived from the rooms' ``people``)."""

    @property
    def max_return(self) -> float:
        """Every scoring event once, plus the solved accusation."""
        return float(sum(self.scores.values()) + self.accusation["reward"])


@functools.lru_cache(maxsize=None)
def load_world() -> World:
    """Load and check the shipped world once; a broken file raises one message naming the fault."""
    path = data_path("detective_world.json")
    raw = json.loads(path.read_text())
    location = {p: room for room, spec in raw["rooms"].items() for p in spec["people"]}
    world = World(**{k: raw[k] for k in ("title", "case", "start", "culprit", "rooms", "items",
                                         "containers", "suspects", "scores", "accusation")},
                  evidence=tuple(raw["evidence"]), location=location)
    problems = []
    if world.start not in world.rooms:
        problems.append(f"start room {world.start!r} is not a room")
    for room, spec in world.rooms.items():
        problems += [f"{room}: exit {d} leads to unknown room {to!r}"
                     for d, to in spec["exits"].items() if to not in world.rooms]
    if set(location) != set(world.suspects):
        problems.append("every suspect must stand in exactly one room's 'people'")
    if world.culprit not in world.suspects:
        problems.append(f"culprit {world.culprit!r} is not a suspect")
    problems += [f"evidence {e!r} has no score" for e in world.evidence if e not in world.scores]
    if problems:
        raise ValueError(f"{path} is inconsistent: " + "; ".join(problems) + ". Fix the file or "
                         "restore it with `git checkout -- data/detective_world.json`.")
    return world


# ----- the state and its transitions (pure functions: the env and the planner share them) --------
@dataclass(frozen=True)
class CaseState:
    """Everything that can change during an episode; hashable so the planner can index it."""

    room: str
    inventory: tuple[str, ...] = ()       # items held, in the world file's order
    used: frozenset[str] = frozenset()    # items used up (the key stays in the drawer's lock)
    opened: frozenset[str] = frozenset()  # containers opened
    done: frozenset[str] = frozenset()    # scoring commands already paid


class Outcome(NamedTuple):
    """What one canonical command does: the next state, the response text and the reward."""

    state: CaseState
    text: str
    reward: float
    terminated: bool
    success: bool


def initial_state(world: World) -> CaseState:
    return CaseState(room=world.start)


def items_here(world: World, state: CaseState) -> list[str]:
    """Items lying in the current room (not held, not used, not inside a closed container)."""
    return [item for item, spec in world.items.items()
            if spec["room"] == state.room and item not in state.inventory and item not in state.used
            and spec.get("container", None) in (None, *state.opened)]


def containers_here(world: World, state: CaseState) -> list[str]:
    return [c for c, spec in world.containers.items() if spec["room"] == state.room]


def topics(world: World, state: CaseState) -> list[str]:
    """What a suspect can be asked about: the clues the detective holds."""
    return [item for item in state.inventory if world.items[item]["clue"]]


def valid_actions(world: World, state: CaseState) -> list[str]:
    """Every command listed on the ``Actions:`` line, in a fixed order (moves first)."""
    room = world.rooms[state.room]
    actions = [f"go {d}" for d in room["exits"]]
    actions += [f"take {item}" for item in items_here(world, state)]
    actions += [f"examine {thing}" for thing in (*room["scenery"], *containers_here(world, state))]
    actions += [f"open {c}" for c in containers_here(world, state) if c not in state.opened]
    for person in room["people"]:
        actions += [f"ask {person}"] + [f"ask {person} about {t}" for t in topics(world, state)]
    actions += [f"accuse {person}" for person in room["people"]]
    return actions


def parse_command(world: World, state: CaseState, utterance: str) -> str | None:
    """The canonical command an utterance means here (``"go library"`` -> ``"go west"``), or None.

    None means unparseable or impossible right now (no such exit, item not here, nobody to ask).
    """
    words = [w for w in normalize_utterance(utterance).split() if w not in _FILLER_WORDS]
    if words in (["look"], ["inventory"]):
        return words[0]
    if len(words) < 2:
        return None
    verb, target, rest = words[0], words[1], words[2:]
    room = world.rooms[state.room]
    if verb == "go" and not rest:
        for direction, to in room["exits"].items():
            if target in (direction, to):
                return f"go {direction}"
        return None
    if verb == "take" and not rest:
        return f"take {target}" if target in items_here(world, state) else None
    if verb == "examine" and not rest:
        visible = (*room["scenery"], *containers_here(world, state), *items_here(world, state),
                   *state.inventory, *room["people"])
        return f"examine {target}" if target in visible else None
    if verb == "open" and not rest:
        closed = [c for c in containers_here(world, state) if c not in state.opened]
        return f"open {target}" if target in closed else None
    if verb in ("ask", "accuse") and target in room["people"]:
        if not rest:
            return f"{verb} {target}"
        if verb == "ask" and len(rest) == 2 and rest[0] == "about" and rest[1] in topics(world, state):
            return f"ask {target} about {rest[1]}"
    return None


def describe_room(world: World, state: CaseState) -> str:
    """``"Hall. Portraits line the walls. ..."`` plus a sentence per item lying here."""
    room = world.rooms[state.room]
    here = [world.items[item]["here"] for item in items_here(world, state)]
    return " ".join([f"{state.room.capitalize()}. {room['description']}", *here])


def apply_command(world: World, state: CaseState, command: str) -> Outcome:
    """Carry out a canonical command (from :func:`parse_command`); pays each scoring event once."""
    verb, *args = command.split()
    happened = True  # False when the command changes nothing (a locked drawer)
    if command == "look":
        text = describe_room(world, state)
    elif command == "inventory":
        text = ("You carry: " + ", ".join(state.inventory) + ".") if state.inventory else (
            "You carry nothing.")
    elif verb == "go":
        state = replace(state, room=world.rooms[state.room]["exits"][args[0]])
        text = describe_room(world, state)
    elif verb == "take":
        held = {*state.inventory, args[0]}  # kept in world order: one state per set of items
        state = replace(state, inventory=tuple(i for i in world.items if i in held))
        text = world.items[args[0]]["take"]
    elif verb == "examine":
        text = _examine_text(world, state, args[0])
    elif verb == "open":
        spec = world.containers[args[0]]
        happened = spec["key"] in state.inventory
        if happened:  # the key stays in the lock: it leaves the inventory for good
            state = replace(state, opened=state.opened | {args[0]}, used=state.used | {spec["key"]},
                            inventory=tuple(i for i in state.inventory if i != spec["key"]))
        text = spec["open"] if happened else spec["locked"]
    elif verb == "ask":
        suspect = world.suspects[args[0]]
        text = suspect["ask"] if len(args) == 1 else suspect["about"].get(args[2], suspect["default"])
    elif verb == "accuse":
        return _accuse(world, state, args[0])
    else:
        raise ValueError(f"apply_command got {command!r}, which parse_command never returns.")

    reward = 0.0
    if happened and command in world.scores and command not in state.done:  # first time only
        reward = float(world.scores[command])
        state = replace(state, done=state.done | {command})
    text += "\nActions: " + ", ".join(valid_actions(world, state))
    return Outcome(state, text, reward, False, False)


def _examine_text(world: World, state: CaseState, thing: str) -> str:
    room = world.rooms[state.room]
    if thing in room["scenery"]:
        return room["scenery"][thing]
    if thing in world.containers:
        spec = world.containers[thing]
        return spec["examine_open"] if thing in state.opened else spec["locked"]
    if thing in world.items:
        return world.items[thing]["examine"]
    return world.suspects[thing]["examine"]


def has_evidence(world: World, state: CaseState) -> bool:
    return all(e in state.done for e in world.evidence)


def _accuse(world: World, state: CaseState, suspect: str) -> Outcome:
    """The only way to end a case: solved (+reward) or failed (penalty); either way it is over."""
    acc = world.accusation
    if suspect != world.culprit:
        return Outcome(state, acc["wrong"], float(acc["penalty"]), True, False)
    if not has_evidence(world, state):
        return Outcome(state, acc["premature"], float(acc["penalty"]), True, False)
    return Outcome(state, acc["solved"], float(acc["reward"]), True, True)


def intro_text(world: World) -> str:
    state = initial_state(world)
    actions = ", ".join(valid_actions(world, state))
    return f"{world.title}. {world.case}\n{describe_room(world, state)}\nActions: {actions}\n"


# ----- the planner: one table from state to the expert's move ------------------------------------
@functools.lru_cache(maxsize=None)
def state_graph() -> dict[CaseState, list[tuple[str, Outcome]]]:
    """Every state reachable from the start through valid actions, with each action's outcome.

    Commands that are accepted but not listed (``look``, ``go library``, ``examine boot``) never
    change the state, so this graph covers every state any player can reach (1260 states).
    """
    world = load_world()
    graph: dict[CaseState, list[tuple[str, Outcome]]] = {}
    frontier = [initial_state(world)]
    while frontier:
        state = frontier.pop()
        if state in graph:
            continue
        graph[state] = [(a, apply_command(world, state, a)) for a in valid_actions(world, state)]
        frontier += [out.state for _, out in graph[state] if not out.terminated]
    return graph


@functools.lru_cache(maxsize=None)
def expert_policy() -> dict[CaseState, str]:
    """state -> first action of a shortest path that ends solved with every point collected.

    Backward BFS: ``moves_left(s) = 1`` where accusing solves the case with all scoring events
    done; otherwise ``moves_left(s) = 1 + min over actions a of moves_left(next(s, a))``. Ties go
    to the earliest action in :func:`valid_actions` order, so the expert is deterministic.
    """
    world = load_world()
    graph = state_graph()
    everything = frozenset(world.scores)

    def finishes(state: CaseState, out: Outcome) -> bool:
        return out.success and state.done == everything

    moves_left: dict[CaseState, int] = {}
    predecessors: dict[CaseState, list[CaseState]] = defaultdict(list)
    queue: deque[CaseState] = deque()
    for state, edges in graph.items():
        for _, out in edges:
            if finishes(state, out) and state not in moves_left:
                moves_left[state] = 1
                queue.append(state)
            elif not out.terminated and out.state != state:
                predecessors[out.state].append(state)
    while queue:
        state = queue.popleft()
        for before in predecessors[state]:
            if before not in moves_left:
                moves_left[before] = moves_left[state] + 1
                queue.append(before)

    policy = {}
    for state, edges in graph.items():
        for action, out in edges:
            after = 0 if finishes(state, out) else moves_left.get(out.state, -1)
            if not out.terminated or finishes(state, out):
                if after == moves_left[state] - 1:
                    policy[state] = action
                    break
    return policy


def walkthrough() -> list[str]:
    """The expert's moves from the start: the optimal solution of the case."""
    world, policy = load_world(), expert_policy()
    state, moves = initial_state(world), []
    while True:
        action = policy[state]
        moves.append(action)
        out = apply_command(world, state, action)
        if out.terminated:
            return moves
        state = out.state


def command_forms(world: World) -> list[str]:
    """Every command the parser could accept in some state, over every object in the world."""
    directions = sorted({d for spec in world.rooms.values() for d in spec["exits"]})
    scenery = [t for spec in world.rooms.values() for t in spec["scenery"]]
    clues = [item for item, spec in world.items.items() if spec["clue"]]
    forms = ["look", "inventory"]
    forms += [f"go {where}" for where in (*directions, *world.rooms)]
    forms += [f"take {item}" for item in world.items]
    forms += [f"examine {t}" for t in (*scenery, *world.containers, *world.items, *world.suspects)]
    forms += [f"open {c}" for c in world.containers]
    for person in world.suspects:
        forms += [f"ask {person}", f"accuse {person}"] + [f"ask {person} about {c}" for c in clues]
    return forms


# ----- the gymnasium env ---------------------------------------------------------------------------
class Detective(TextEnv):
    """The Ashworth Pearls: find clues, question suspects, accuse the thief (see module docstring).

    ``info`` carries ``valid_actions``, ``score`` (return so far), ``success`` and the hidden
    ``culprit``.
    """

    max_turns = 50
    invalid_response = "You can't do that."
    accuse_in_noise = 0.1
    """How often a noisy player's random move may also be an accusation (else it never is)."""

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode)
        self.world = load_world()
        self.state = initial_state(self.world)
        self.score = 0.0
        self.success = False

    # ----- TextEnv hooks -----
    def _start(self, rng: np.random.Generator, options: dict[str, Any]) -> dict[str, Any]:
        # The story is fixed: the seed changes nothing, it is accepted for the gymnasium API.
        self.state = initial_state(self.world)
        self.score = 0.0
        self.success = False
        return {"culprit": self.world.culprit}

    def _intro(self) -> str:
        return intro_text(self.world)

    def _respond(self, utterance: str) -> tuple[str, float, bool, dict[str, Any]]:
        command = parse_command(self.world, self.state, utterance)
        if command is None:
            return self._invalid()
        out = apply_command(self.world, self.state, command)
        self.state = out.state
        self.score += out.reward
        self.success = out.success
        return out.text, out.reward, out.terminated, {}

    def _invalid(self) -> tuple[str, float, bool, dict[str, Any]]:
        return self.invalid_response, 0.0, False, {}  # costs a turn, but no points

    def _info(self, invalid: bool) -> dict[str, Any]:
        info = super()._info(invalid)
        info.update(valid_actions=self.valid_actions(), score=self.score, success=self.success)
        return info

    # ----- what demonstrators and tokenizers read -----
    def valid_actions(self) -> list[str]:
        """The commands on the last ``Actions:`` line (empty once the episode is over)."""
        return [] if self.done else valid_actions(self.world, self.state)

    def expert_action(self, rng: np.random.Generator | None = None) -> str:
        """The next move of a shortest maximum-score solution from the current state.

        ``rng`` is unused (the expert is deterministic); it is accepted for a common signature.
        """
        return expert_policy().get(self.state, "look")

    def noisy_action(self, rng: np.random.Generator, noise: float = 0.5) -> str:
        """With probability ``noise`` a uniformly random valid action, else the expert's.

        The random action avoids ``accuse`` except ``accuse_in_noise`` of the time, so a noisy
        player rarely throws the case away by accusing at random.
        """
        if rng.random() >= noise:
            return self.expert_action(rng)
        actions = self.valid_actions()
        if rng.random() >= self.accuse_in_noise:
            actions = [a for a in actions if not a.startswith("accuse ")] or actions
        if not actions:
            return "look"
        return actions[int(rng.integers(len(actions)))]

    def corpus(self) -> list[str]:
        """Every string the env can emit or accept: intro, responses, actions, command forms."""
        world = self.world
        forms = command_forms(world)
        texts = {intro_text(world), self.invalid_response, *forms}
        for state in state_graph():
            texts.update(valid_actions(world, state))
            for utterance in forms:
                command = parse_command(world, state, utterance)
                if command is not None:
                    texts.add(apply_command(world, state, command).text)
        return sorted(texts)
