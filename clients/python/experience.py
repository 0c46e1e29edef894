"""The agent's steps as experience events: fractality's experience store and replay.

Events belong to the agent runtime, not to a tenant (they carry no user_id): one episode per
conversation, one event per step, written as one JSON batch with fractality.write_events_json.

Left out until issue 17 lands: writing priorities back after learning
(fractality.update_priorities) and fetching a learner's batch in one call (replay_batch).
`sample` uses today's sample_experiences, whose priority is |total reward|^alpha over the whole
store.
"""

import json
import time
import uuid

ACTIONS = ("remember", "recall", "forget")


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
            "adna_version_hash": 0, "sequence_number": self.steps,
            "metadata": {"intent_type": action, "executor_id": self.executor, "parameters": parameters},
        }
        for i in range(8):
            event[f"state_l{i + 1}"] = state[i]
            event[f"action_l{i + 1}"] = one_hot[i]
        self.pending.append(event)
        self.steps += 1
        return event_id

    def flush(self, conn) -> int:
        """Writes the pending steps in one batch, in the caller's transaction."""
        if not self.pending:
            return 0
        n = conn.execute("SELECT fractality.write_events_json(%s::text)",
                         (json.dumps(self.pending),)).fetchone()[0]
        self.pending.clear()
        return n

    def returns(self, conn, since_us: int, gamma: float = 0.9):
        """(steps, total, discounted) of this episode, from fractality.episode_returns."""
        return conn.execute(
            "SELECT steps, total, discounted FROM fractality.episode_returns(%s, %s, %s) WHERE episode_id = %s",
            (since_us, now_us() + 1, gamma, self.episode_id)).fetchone()


def sample(conn, n: int, since_us: int, seed: int):
    """A prioritised replay batch over the store: (event_id, priority, weight, episode_id or None
    for events older than `since_us`, step_number)."""
    return conn.execute(
        """SELECT s.event_id, s.priority, s.weight, e.episode_id, e.step_number
             FROM fractality.sample_experiences(%s, 0.6, 0.4, %s) s
             LEFT JOIN fractality.query_events(%s, %s, 100000) e USING (event_id)
            ORDER BY s.priority DESC, s.event_id""",
        (n, seed, since_us, now_us() + 1)).fetchall()
