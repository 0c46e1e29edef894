"""The agent's steps as experience events, and prioritised replay over them.

Events belong to the agent runtime, not to a tenant (they carry no user_id): one episode per
conversation, one event per step, written as one JSON batch with fractality.write_events_json.

Replay: the agent keeps a named replay buffer (`ensure_buffer`, created once; every event written
afterwards enters it at the buffer's largest priority). A learner takes a batch in one call
(`replay_batch`: state, action, rewards, next state, sampling probability and importance weight),
computes its TD errors and writes them back (`update_priorities`): priority = |TD error| + epsilon.
"""

import json
import time
import uuid

import psycopg

ACTIONS = ("remember", "recall", "forget")
BUFFER = "python-agent"
POLICY_VERSION = 1  # the events' adna_version_hash: the buffer takes this agent's events only


def now_us() -> int:
    return time.time_ns() // 1000


class Episode:
    def __init__(self, episode_id: int, executor: str = "python-agent"):
        self.episode_id = episode_id
        self.executor = executor
        self.pending: list[dict] = []
        self.steps = 0

    def step(self, action: str, state: list[float], parameters: dict, *, goal: float = 0.0,
             curiosity: float = 0.0, efficiency: float = 0.0) -> bytes:
        """Records one step (written by `flush`); returns its 16-byte event id."""
        event_id = uuid.uuid4().bytes
        one_hot = [1.0 if a == action else 0.0 for a in ACTIONS] + [0.0] * (8 - len(ACTIONS))
        event = {
            "event_id": event_id.hex(), "timestamp": now_us(), "episode_id": self.episode_id,
            "step_number": self.steps, "event_type": ACTIONS.index(action) + 1, "flags": 0,
            "reward_goal": goal, "reward_curiosity": curiosity, "reward_efficiency": efficiency,
            "adna_version_hash": POLICY_VERSION, "sequence_number": self.steps,
            "metadata": {"intent_type": action, "executor_id": self.executor, "parameters": parameters},
        }
        for i in range(8):
            event[f"state_l{i + 1}"] = state[i]
            event[f"action_l{i + 1}"] = one_hot[i]
        self.pending.append(event)
        self.steps += 1
        return event_id

    def mark(self):
        """The steps recorded so far, to go back to if a transaction that flushes them fails."""
        return (list(self.pending), self.steps)

    def rewind(self, mark) -> None:
        """Back to `mark`: the steps recorded (and flushed) since are forgotten."""
        self.pending, self.steps = list(mark[0]), mark[1]

    def flush(self, conn) -> int:
        """Writes the pending steps in one batch, in the caller's transaction."""
        if not self.pending:
            return 0
        n = conn.execute("SELECT fractality.write_events_json(%s::text)",
                         (json.dumps(self.pending),)).fetchone()[0]
        self.pending.clear()
        return n

    def returns(self, conn, since_us: int, gamma: float = 0.9):
        """(steps, total, discounted) of this episode, from fractality.episode_returns; (0, 0.0,
        0.0) for an episode with no event written yet."""
        row = conn.execute(
            "SELECT steps, total, discounted FROM fractality.episode_returns(%s, %s, %s) WHERE episode_id = %s",
            (since_us, now_us() + 1, gamma, self.episode_id)).fetchone()
        return row if row is not None else (0, 0.0, 0.0)


def ensure_buffer(conn, name: str = BUFFER) -> tuple[int, bool]:
    """The replay buffer `name` (alpha 0.6, beta 0.4, this agent's policy version), created if it
    does not exist: (buffer_id, created). Safe against a concurrent creator (42710 caught)."""
    find = "SELECT buffer_id FROM fractality.replay_buffers WHERE name = %s"
    if row := conn.execute(find, (name,)).fetchone():
        return row[0], False
    try:
        with conn.transaction():  # a savepoint inside a transaction: the failure stays in it
            return conn.execute("SELECT fractality.create_replay_buffer(%s, policy_version => %s)",
                                (name, POLICY_VERSION)).fetchone()[0], True
    except psycopg.errors.DuplicateObject:  # created meanwhile by another session
        return conn.execute(find, (name,)).fetchone()[0], False


BATCH_COLUMNS = ("event_id", "episode_id", "step_number", "intent_type", "state", "next_state",
                 "total_reward", "priority", "probability", "weight")


def replay_batch(conn, n: int, seed: int | None = None, buffer: str = BUFFER) -> list[dict]:
    """`n` prioritised draws (with replacement) from the buffer, each a transition: the event's
    state, its reward, the next state of its episode (None at the end of one), its priority,
    sampling probability and importance weight."""
    cur = conn.execute(
        f"SELECT {', '.join(BATCH_COLUMNS)} FROM fractality.replay_batch(%s, %s, seed => %s)",
        (buffer, n, seed))
    return [dict(zip(BATCH_COLUMNS, row)) for row in cur]


def td_errors(batch: list[dict], gamma: float = 0.9) -> list[float]:
    """A toy critic's TD errors: V(s) is the batch's mean reward for every state (0 after the end
    of an episode), so delta = r + gamma * V(s') - V(s). A real learner puts its network here."""
    v = sum(t["total_reward"] for t in batch) / len(batch) if batch else 0.0
    return [t["total_reward"] + (gamma * v if t["next_state"] is not None else 0.0) - v for t in batch]


def update_priorities(conn, event_ids: list[bytes], errors: list[float], buffer: str = BUFFER) -> int:
    """Writes |TD error| back as the priority of each event (the buffer adds its epsilon); returns
    the items updated (an id drawn twice counts once)."""
    return conn.execute("SELECT fractality.update_priorities(%s, %s::bytea[], %s::float8[])",
                        (buffer, event_ids, [abs(e) for e in errors])).fetchone()[0]
