"""shape_agent: the shape of a reinforcement-learning plugin (DQN, Mnih et al., 2015; Double DQN targets,
van Hasselt et al., 2016) on Gymnasium's CartPole-v1.

No arrays at all: the dataset is an environment described in ``info``. The budget is environment steps
(``budget_unit = "step"``, its own ``--total-steps``; the config subclasses ``BaseConfig``, so there is
no ``--epochs``, ``--train-samples`` or ``--val-fraction``). Every ``--checkpoint-every`` steps the loop
logs and checkpoints the Q-network, the target network, the optimizer, ε, the episode count and the
replay buffer (a NumPy array), so ``--resume`` continues where the checkpoint was. The environment id is
kept with the run as an artifact, and ``evaluate`` plays a few greedy episodes in it.
"""
from __future__ import annotations

from dataclasses import dataclass

from dlkit.api import Algorithm, BaseConfig, Dataset, option

ENV_ID = "CartPole-v1"


@dataclass
class AgentConfig(BaseConfig):
    total_steps: int = option(20000, "Environment steps to train for.", min=1)
    checkpoint_every: int = option(1000, "Log and checkpoint every N environment steps.", min=1)
    replay_size: int = option(10000, "Transitions the replay buffer keeps.", min=1)
    warmup: int = option(500, "Steps before the first update (the buffer fills with ε-greedy play).", min=0)
    batch_size: int = option(64, "Transitions per update.", min=1)
    hidden: int = option(64, "Width of the Q-network's two hidden layers.", min=1)
    learning_rate: float = option(1e-3, "Adam learning rate.", min=0.0)
    gamma: float = option(0.99, "Discount factor.", min=0.0, max=1.0)
    epsilon_decay: float = option(0.999, "ε is multiplied by this after every step (from 1).", min=0.0, max=1.0)
    epsilon_min: float = option(0.05, "Lowest ε.", min=0.0, max=1.0)
    target_every: int = option(500, "Copy the Q-network into the target network every N steps.", min=1)
    eval_episodes: int = option(5, "Greedy episodes played by evaluate.", min=1)
    eval_max_steps: int = option(500, "Longest evaluation episode.", min=1)


class Agent(Algorithm):
    name = "shape_agent"
    summary = "Shape test: Double DQN on CartPole-v1 (no arrays, a step budget, a replay buffer checkpoint)"
    config = AgentConfig
    task = "reinforcement-learning"
    headline_metric = "mean_return"
    budget_unit = "step"
    test_config = {"total_steps": 300, "checkpoint_every": 100, "replay_size": 300, "warmup": 64,
                   "batch_size": 32, "hidden": 16, "eval_episodes": 2, "eval_max_steps": 100}
    api_version = 1

    def load_data(self, cfg: AgentConfig) -> Dataset:
        import gymnasium as gym

        env = gym.make(ENV_ID)
        info = {"env_id": ENV_ID, "observation_shape": tuple(env.observation_space.shape),
                "actions": int(env.action_space.n)}
        env.close()
        return Dataset(name=ENV_ID, info=info)

    def build(self, cfg: AgentConfig, data: Dataset):
        import keras
        from keras import layers

        return keras.Sequential([
            keras.Input(data.info["observation_shape"]),
            layers.Dense(cfg.hidden, activation="relu"), layers.Dense(cfg.hidden, activation="relu"),
            layers.Dense(data.info["actions"]),
        ], name="q_network")

    def train(self, model, data: Dataset, cfg: AgentConfig, run):
        import gymnasium as gym
        import keras
        import numpy as np
        from keras import ops

        from dlkit.steps import GradientStep

        run.save_artifact("env.json", {"env_id": data.info["env_id"]})
        q_network = model
        target = keras.models.clone_model(q_network)
        target.set_weights(q_network.get_weights())
        optimizer = keras.optimizers.Adam(cfg.learning_rate)
        optimizer.build(q_network.trainable_variables)
        state = run.restore(target=target, optimizer=optimizer)
        epsilon, episodes = state.get("epsilon", 1.0), state.get("episodes", 0)
        replay = Replay(cfg.replay_size, data.info["observation_shape"][0], state)
        huber = keras.losses.Huber()

        def td_loss(states, actions, rewards, next_states, done):
            q = ops.take_along_axis(q_network(states, training=True), actions[:, None], axis=1)[:, 0]
            best = ops.argmax(q_network(next_states), axis=1)  # the online network picks, the target rates
            next_q = ops.take_along_axis(target(next_states), best[:, None], axis=1)[:, 0]
            return huber(ops.stop_gradient(rewards + cfg.gamma * (1.0 - done) * next_q), q)

        td_step = GradientStep(td_loss, trainable=q_network, optimizer=optimizer, uses=target)
        rng = np.random.default_rng([cfg.seed, run.start])
        env = gym.make(data.info["env_id"])
        obs, _ = env.reset(seed=cfg.seed + run.start)
        episode_return, returns, losses = 0.0, [], []
        for step in range(run.start, cfg.total_steps):
            if run.stop_requested:
                return None
            if rng.random() < epsilon:
                action = int(rng.integers(data.info["actions"]))
            else:
                action = greedy(q_network, obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            replay.add(obs, action, reward, next_obs, terminated)
            obs, episode_return = next_obs, episode_return + reward
            if terminated or truncated:
                returns.append(episode_return)
                episodes += 1
                obs, episode_return = env.reset()[0], 0.0
            if replay.fill >= max(cfg.warmup, cfg.batch_size):
                losses.append(td_step(*replay.sample(rng, cfg.batch_size))["loss"])
            epsilon = max(cfg.epsilon_min, epsilon * cfg.epsilon_decay)
            done = step + 1
            if done % cfg.target_every == 0:
                target.set_weights(q_network.get_weights())
            if done % cfg.checkpoint_every == 0 or done == cfg.total_steps:
                run.log(done, loss=np.mean(losses) if losses else None,
                        episode_return=np.mean(returns) if returns else None,
                        epsilon=epsilon, episodes=episodes, replay=replay.fill)
                run.checkpoint(done, q_network, target=target, optimizer=optimizer, epsilon=epsilon,
                               episodes=episodes, **replay.state())
                returns, losses = [], []
        env.close()
        return None

    def evaluate(self, model, data: Dataset, cfg: AgentConfig) -> dict:
        import gymnasium as gym
        import numpy as np

        env_id = self.run.load_artifact("env.json")["env_id"] if self.run is not None else data.info["env_id"]
        env = gym.make(env_id)
        returns = []
        for episode in range(cfg.eval_episodes):
            obs, _ = env.reset(seed=10_000 + episode)
            total = 0.0
            for _ in range(cfg.eval_max_steps):
                obs, reward, terminated, truncated, _ = env.step(greedy(model, obs))
                total += reward
                if terminated or truncated:
                    break
            returns.append(total)
        env.close()
        return {"mean_return": float(np.mean(returns)), "episodes": len(returns)}


def greedy(q_network, obs) -> int:
    import keras

    return int(keras.ops.convert_to_numpy(q_network(obs[None].astype("float32"), training=False))[0].argmax())


class Replay:
    """A ring buffer of (state, action, reward, next state, done) rows in one float32 array."""

    def __init__(self, capacity: int, obs_dim: int, saved: dict):
        import numpy as np

        self.obs_dim = obs_dim
        self.rows = saved.get("replay", np.zeros((capacity, 2 * obs_dim + 3), "float32"))
        self.fill, self.next = saved.get("replay_fill", 0), saved.get("replay_next", 0)

    def add(self, obs, action, reward, next_obs, done) -> None:
        import numpy as np

        self.rows[self.next] = np.concatenate([obs, [action, reward], next_obs, [float(done)]])
        self.next = (self.next + 1) % len(self.rows)
        self.fill = min(self.fill + 1, len(self.rows))

    def sample(self, rng, size: int) -> tuple:
        rows = self.rows[rng.integers(self.fill, size=size)]
        d = self.obs_dim
        return (rows[:, :d], rows[:, d].astype("int32"), rows[:, d + 1], rows[:, d + 2:2 * d + 2], rows[:, -1])

    def state(self) -> dict:
        return {"replay": self.rows, "replay_fill": self.fill, "replay_next": self.next}
