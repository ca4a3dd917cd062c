"""Deep Q-Network with Double DQN targets on Gymnasium environments (CartPole-v1 by default).

Mnih et al., "Human-level control through deep reinforcement learning", Nature 518 (2015): a neural
network Q(s, a; θ) learns the action values of an environment from transitions (s, a, r, s', d) replayed
at random from a buffer of past play, against targets from a second, slowly following network θ⁻:

    y = r + γ (1 − d) max_a' Q(s', a'; θ⁻)                       (DQN, --no-double)
    y = r + γ (1 − d) Q(s', argmax_a' Q(s', a'; θ); θ⁻)           (Double DQN, the default)
    L(θ) = mean over the batch of Huber_1(y − Q(s, a; θ))        (y held constant: no gradient through it)
    θ⁻ ← τ θ + (1 − τ) θ⁻ every --target-every environment steps (τ = 1: a copy)

van Hasselt, Guez & Silver, "Deep Reinforcement Learning with Double Q-learning", AAAI 2016: the online
network picks the next action and the target network rates it, which removes most of max's overestimation.
d is 1 only when the episode *terminated*; an episode cut by the time limit is bootstrapped as usual.

Play is ε-greedy with ε falling linearly from 1 to --epsilon-final over the first --exploration-fraction of
the budget. Every --train-every environment steps (after --learning-starts) the Q-network takes
--gradient-steps Adam steps on batches drawn from the buffer, at a learning rate that falls linearly to 0
by the last one (--no-anneal: constant). The defaults start from rl-baselines3-zoo's tuned CartPole-v1 DQN
hyperparameters (hyperparams/dqn.yml: batch 64, buffer 100k, learning_starts 1000, γ 0.99, target update
every 10 steps, train_freq 256 with 128 gradient steps, exploration 0.16 → 0.04, 256-256 network;
Stable-Baselines3's gradient clipping at norm 10) with three changes: Double DQN targets, a learning rate of
1e-3 instead of 2.3e-3, and its annealing. At 2.3e-3 the final greedy policy of a 50,000-step run swung
from seed to seed (seed 0: 500; seed 1: 139 at a constant rate; seed 2: 179 with annealing); at 1e-3 with
annealing seeds 0, 1 and 2 all reach 500 (benchmarks/dqn.py).

The update is one ``dlkit.steps.GradientStep``, the same numbers on TensorFlow, JAX and PyTorch. Between
two training rounds the policy does not change, so acting reads a NumPy copy of the Q-network's weights
(about 10 µs per step, against 0.1–0.6 ms for a Keras call on one observation).

The budget is --total-steps environment steps (``budget_unit = "step"``). Every --log-every steps the loop
logs the mean return of the episodes that ended and the TD loss, and checkpoints the Q-network, the target
network, the optimizer (its step count drives the learning-rate decay), the replay buffer and the episode
returns so far, so ``dlkit train --resume RUN`` continues from there; ε follows from the step. The episode in
progress starts over, and the resumed run draws its random numbers from (seed, step of the resume). The headline is the
mean return of --eval-episodes greedy episodes, each with its own seed (1,000,000,000 + i: never a training
seed); ``dlkit evaluate RUN --backend B`` reloads the Q-network on any backend and plays them again.
plots/returns.png shows every training episode's return against environment steps, plots/episode.gif one
greedy episode.
"""
from __future__ import annotations

from dataclasses import dataclass

from dlkit.api import Algorithm, BaseConfig, Dataset, option

#: Evaluation episode i is reset with seed EVAL_SEED + i: far from the training environment's seeds.
EVAL_SEED = 1_000_000_000


@dataclass
class DQNConfig(BaseConfig):
    env: str = option("CartPole-v1", "Gymnasium environment id: vector observations, discrete actions "
                                     "(e.g. Acrobot-v1, MountainCar-v0).")
    total_steps: int = option(50_000, "Environment steps to train for (the budget).", min=1)
    hidden: tuple[int, ...] = option((256, 256), "Widths of the Q-network's hidden ReLU layers.", min=1)
    learning_rate: float = option(1e-3, "Adam learning rate (at the start, with --anneal).", min=0.0)
    anneal: bool = option(True, "Decay the learning rate linearly to 0 over the training rounds (--no-anneal: constant).")
    batch_size: int = option(64, "Transitions per gradient step.", min=1)
    buffer_size: int = option(100_000, "Transitions the replay buffer keeps (the oldest go first).", min=1)
    learning_starts: int = option(1000, "Environment steps of play before the first update.", min=0)
    train_every: int = option(256, "Environment steps between two training rounds.", min=1)
    gradient_steps: int = option(128, "Gradient steps in each training round.", min=1)
    gamma: float = option(0.99, "Discount factor γ.", min=0.0, max=1.0)
    double: bool = option(True, "Double DQN targets (--no-double: the Nature DQN's max over the target network).")
    target_every: int = option(10, "Update the target network every N environment steps.", min=1)
    tau: float = option(1.0, "Target update θ⁻ ← τθ + (1−τ)θ⁻ (1: copy; 0.005: Polyak averaging).", min=0.0, max=1.0)
    exploration_fraction: float = option(0.16, "Fraction of the budget over which ε falls linearly from 1.",
                                         min=0.0, max=1.0)
    epsilon_final: float = option(0.04, "ε after the fall, to the end of training.", min=0.0, max=1.0)
    log_every: int = option(2000, "Log and checkpoint every N environment steps.", min=1)
    eval_episodes: int = option(100, "Greedy episodes played by evaluate (each with its own seed).", min=1)


class DQN(Algorithm):
    name = "dqn"
    summary = "Double DQN on Gymnasium's CartPole-v1 (or any --env with vector observations and discrete actions)"
    config = DQNConfig
    task = "reinforcement-learning"
    headline_metric = "mean_return"
    budget_unit = "step"
    test_config = {"total_steps": 300, "hidden": (16,), "buffer_size": 300, "learning_starts": 100,
                   "train_every": 50, "gradient_steps": 4, "batch_size": 16, "log_every": 100, "eval_episodes": 2}
    api_version = 1

    # -- the environment -----------------------------------------------------------------------------
    def load_data(self, cfg: DQNConfig) -> Dataset:
        env = make_env(cfg.env)
        info = {"env_id": cfg.env, "observation_dim": int(env.observation_space.shape[0]),
                "actions": int(env.action_space.n), "action_start": int(env.action_space.start)}
        env.close()
        return Dataset(name=cfg.env, info=info)

    # -- the Q-network -------------------------------------------------------------------------------
    def build(self, cfg: DQNConfig, data: Dataset):
        import keras
        from keras import layers

        return keras.Sequential([
            keras.Input((data.info["observation_dim"],)),
            *[layers.Dense(width, activation="relu") for width in cfg.hidden],
            layers.Dense(data.info["actions"]),  # one Q-value per action
        ], name="q_network")

    # -- training ------------------------------------------------------------------------------------
    def train(self, model, data: Dataset, cfg: DQNConfig, run):
        import time

        import keras
        import numpy as np

        from dlkit.steps import GradientStep

        q_network = model
        target = keras.models.clone_model(q_network)
        target.set_weights(q_network.get_weights())
        optimizer = keras.optimizers.Adam(learning_rate(cfg), global_clipnorm=10.0)
        optimizer.build(q_network.trainable_variables)  # restore fills built optimizers only
        saved = run.restore(target=target, optimizer=optimizer)
        replay = ReplayBuffer(cfg.buffer_size, data.info["observation_dim"], saved)
        episodes = list(map(tuple, saved.get("episodes", np.zeros((0, 2))).tolist()))  # (step ended, return)
        td_step = GradientStep(td_loss(q_network, target, cfg.gamma, cfg.double), trainable=q_network,
                               optimizer=optimizer, uses=target)
        policy = NumpyPolicy(q_network)

        # a resumed run draws from a stream of its own, and starts a new episode
        rng = np.random.default_rng([cfg.seed, run.start])
        env = make_env(data.info["env_id"])
        obs, _ = env.reset(seed=cfg.seed + run.start)
        start = data.info["action_start"]
        episode_return, losses, q_values = 0.0, [], []
        logged, started = len(episodes), time.perf_counter()
        for step in range(run.start + 1, cfg.total_steps + 1):  # `step`: environment steps done after this one
            if run.stop_requested:  # Ctrl-C: return between two steps; the last checkpoint stays
                return None
            epsilon = epsilon_at(step - 1, cfg)
            if rng.random() < epsilon:
                action = int(rng.integers(data.info["actions"]))
            else:
                action = int(policy(obs[None])[0].argmax())
            next_obs, reward, terminated, truncated, _ = env.step(action + start)
            # only a terminal state has no future; a time limit cuts the episode, not the MDP
            replay.add(obs, action, reward, next_obs, terminated)
            obs, episode_return = next_obs, episode_return + float(reward)
            if terminated or truncated:
                episodes.append((step, episode_return))
                obs, episode_return = env.reset()[0], 0.0

            if step > cfg.learning_starts and step % cfg.train_every == 0:
                for _ in range(cfg.gradient_steps):
                    logs = td_step(*replay.sample(rng, cfg.batch_size))
                    losses.append(logs["loss"])
                    q_values.append(logs["q"])
                policy.refresh()
            if step % cfg.target_every == 0:
                update_target(target, q_network, cfg.tau)

            if step % cfg.log_every == 0 or step == cfg.total_steps:
                recent = [r for _, r in episodes[logged:]]
                run.log(step, episode_return=np.mean(recent) if recent else None,
                        loss=np.mean(losses) if losses else None, q=np.mean(q_values) if q_values else None,
                        epsilon=epsilon, episodes=len(episodes))
                run.checkpoint(step, q_network, target=target, optimizer=optimizer,
                               episodes=np.asarray(episodes, "float64").reshape(-1, 2), **replay.state())
                shown = f"{np.mean(recent):.1f} over {len(recent)} episodes" if recent else "no episode ended"
                loss = f"{np.mean(losses):.4f}" if losses else "-"
                print(f"step {step}: return {shown}, loss {loss}, ε {epsilon:.3f}, "
                      f"{time.perf_counter() - started:.1f} s", flush=True)
                logged, losses, q_values = len(episodes), [], []
        env.close()
        self.episodes = episodes
        return None

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, model, data: Dataset, cfg: DQNConfig) -> dict:
        import numpy as np

        returns, lengths = greedy_episodes(model, data.info, cfg.eval_episodes)
        return {"mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
                "min_return": float(np.min(returns)), "max_return": float(np.max(returns)),
                "mean_length": float(np.mean(lengths)), "episodes": len(returns),
                "seeds": f"{EVAL_SEED}..{EVAL_SEED + len(returns) - 1}"}

    def extra_plots(self, model, data: Dataset, cfg: DQNConfig, run) -> None:
        episodes = getattr(self, "episodes", [])
        if episodes:
            plot_returns(episodes, run.plots_dir / "returns.png", f"dqn on {data.name}", cfg.total_steps)
        record_episode(model, data.info, run.plots_dir / "episode.gif")


# -- environments --------------------------------------------------------------------------------------
def make_env(env_id: str, **kwargs):
    """``gym.make(env_id)``, or one line saying why dqn cannot use it."""
    import gymnasium as gym

    from dlkit.errors import DlkitError, first_line, suggest

    if env_id not in gym.registry:
        hint = suggest(env_id, gym.registry)
        raise DlkitError(f"unknown Gymnasium environment '{env_id}'." + hint if hint else
                         f"unknown Gymnasium environment '{env_id}' (gymnasium.pprint_registry() lists the ids)")
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as exc:  # a missing extra (Box2D, MuJoCo), a deprecated version
        raise DlkitError(f"cannot make {env_id}: {first_line(exc)}") from None
    if not isinstance(env.action_space, gym.spaces.Discrete):
        env.close()
        raise DlkitError(f"dqn needs discrete actions; {env_id} has {describe(env.action_space)}")
    space = env.observation_space
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        env.close()
        images = isinstance(space, gym.spaces.Box) and len(space.shape) == 3
        raise DlkitError(f"dqn needs a vector observation; {env_id} observes {'images, ' * images}{describe(space)}")
    return env


def describe(space) -> str:
    """``Box(-2, 2)`` for Pendulum's actions, ``Box(0, 255, shape (96, 96, 3))``; other spaces as Gymnasium prints them."""
    import gymnasium as gym
    import numpy as np

    if isinstance(space, gym.spaces.Box) and np.unique(space.low).size == 1 and np.unique(space.high).size == 1:
        shape = "" if space.shape == (1,) else f", shape {space.shape}"
        return f"Box({space.low.flat[0]:g}, {space.high.flat[0]:g}{shape})"
    return str(space)


# -- the update ------------------------------------------------------------------------------------------
def td_target(q_network, target, rewards, next_states, done, gamma: float, double: bool):
    """y = r + γ(1 − d)·Q⁻(s', a*), with a* from the online network (Double DQN) or from Q⁻ itself (DQN)."""
    from keras import ops

    next_q = target(next_states)
    if double:
        best = ops.argmax(q_network(next_states), axis=1)
    else:
        best = ops.argmax(next_q, axis=1)
    chosen = ops.take_along_axis(next_q, best[:, None], axis=1)[:, 0]
    return rewards + gamma * (1.0 - done) * chosen


def td_loss(q_network, target, gamma: float, double: bool):
    """The loss of one GradientStep: Huber between Q(s, a) and the (constant) TD target, and the mean Q."""
    import keras
    from keras import ops

    huber = keras.losses.Huber(delta=1.0)

    def loss(states, actions, rewards, next_states, done):
        y = ops.stop_gradient(td_target(q_network, target, rewards, next_states, done, gamma, double))
        q = ops.take_along_axis(q_network(states, training=True), actions[:, None], axis=1)[:, 0]
        return huber(y, q), {"q": ops.mean(q)}

    return loss


def update_target(target, q_network, tau: float) -> None:
    """θ⁻ ← τθ + (1 − τ)θ⁻, variable by variable (τ = 1 copies)."""
    for mine, theirs in zip(target.trainable_variables, q_network.trainable_variables):
        mine.assign(theirs.value if tau == 1.0 else tau * theirs.value + (1.0 - tau) * mine.value)


def learning_rate(cfg: DQNConfig):
    """The Adam rate: constant, or falling linearly to 0 at the last gradient step of the budget.

    The optimizer counts gradient steps (checkpointed with it, so a resumed run continues the decay).
    """
    import keras

    rounds = cfg.total_steps // cfg.train_every - cfg.learning_starts // cfg.train_every
    if not cfg.anneal or rounds <= 0:
        return cfg.learning_rate
    return keras.optimizers.schedules.PolynomialDecay(cfg.learning_rate, rounds * cfg.gradient_steps, 0.0)


def epsilon_at(step: int, cfg: DQNConfig) -> float:
    """Linear from 1 at step 0 to ``epsilon_final`` at ``exploration_fraction · total_steps``, then flat."""
    span = cfg.exploration_fraction * cfg.total_steps
    if span <= 0:
        return cfg.epsilon_final
    return max(cfg.epsilon_final, 1.0 + (cfg.epsilon_final - 1.0) * step / span)


class ReplayBuffer:
    """A ring buffer of (s, a, r, s', d) rows in one float32 array; the oldest rows are overwritten first."""

    def __init__(self, capacity: int, obs_dim: int, saved: dict | None = None):
        import numpy as np

        self.obs_dim = obs_dim
        self.rows = np.zeros((capacity, 2 * obs_dim + 3), "float32")
        self.fill, self.next = 0, 0
        if saved and "replay" in saved:  # a resumed run: the rows that were filled, and the write position
            kept = saved["replay"]
            self.rows[:len(kept)] = kept
            self.fill, self.next = len(kept), int(saved["replay_next"])

    def add(self, obs, action: int, reward: float, next_obs, done: bool) -> None:
        d = self.obs_dim
        row = self.rows[self.next]
        row[:d], row[d], row[d + 1], row[d + 2:2 * d + 2], row[-1] = obs, action, reward, next_obs, float(done)
        self.next = (self.next + 1) % len(self.rows)
        self.fill = min(self.fill + 1, len(self.rows))

    def sample(self, rng, size: int) -> tuple:
        """(states, actions, rewards, next states, done) of ``size`` rows drawn uniformly, with replacement."""
        rows = self.rows[rng.integers(self.fill, size=size)]
        d = self.obs_dim
        return rows[:, :d], rows[:, d].astype("int32"), rows[:, d + 1], rows[:, d + 2:2 * d + 2], rows[:, -1]

    def state(self) -> dict:
        return {"replay": self.rows[:self.fill], "replay_next": self.next}


class NumpyPolicy:
    """The Q-network's forward pass in NumPy, for acting: Dense layers, ReLU between them, as ``build`` makes it."""

    def __init__(self, q_network):
        self.q_network = q_network
        self.refresh()

    def refresh(self) -> None:
        """Copy the weights again (after a training round)."""
        weights = self.q_network.get_weights()
        self.layers = list(zip(weights[::2], weights[1::2]))  # (kernel, bias) per Dense layer

    def __call__(self, obs):
        import numpy as np

        h = np.asarray(obs, "float32")
        for kernel, bias in self.layers[:-1]:
            h = np.maximum(h @ kernel + bias, 0.0)
        kernel, bias = self.layers[-1]
        return h @ kernel + bias


# -- greedy play -----------------------------------------------------------------------------------------
def greedy_episodes(model, info: dict, count: int):
    """Returns and lengths of ``count`` greedy episodes, seeds EVAL_SEED + i, played side by side.

    All environments step together and the Keras model rates every observation at once: one batch of
    a fixed size per step (an environment that is done keeps its last observation), so the compiled
    forward pass is traced once.
    """
    import numpy as np

    envs = [make_env(info["env_id"]) for _ in range(count)]
    obs = np.stack([env.reset(seed=EVAL_SEED + i)[0] for i, env in enumerate(envs)]).astype("float32")
    returns, lengths = np.zeros(count), np.zeros(count, "int64")
    running = np.ones(count, bool)
    while running.any():
        actions = np.asarray(model.predict_on_batch(obs)).argmax(axis=1)
        for i in np.flatnonzero(running):
            next_obs, reward, terminated, truncated, _ = envs[i].step(int(actions[i]) + info["action_start"])
            obs[i], returns[i], lengths[i] = next_obs, returns[i] + reward, lengths[i] + 1
            running[i] = not (terminated or truncated)
    for env in envs:
        env.close()
    return returns, lengths


def record_episode(model, info: dict, path) -> None:
    """One greedy episode (the first evaluation seed) as an animated GIF at the environment's frame rate."""
    import os

    import numpy as np
    from gymnasium.error import DependencyNotInstalled
    from PIL import Image

    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # pygame.init() opens a sound device that drawing does not need
    try:
        env = make_env(info["env_id"], render_mode="rgb_array")
        obs, _ = env.reset(seed=EVAL_SEED)
        frames = [env.render()]
    except DependencyNotInstalled as exc:  # pygame: gymnasium[classic-control]
        print(f"note: {path.name} not written: {str(exc).splitlines()[0]}")
        return
    done = False
    while not done:
        action = int(np.asarray(model.predict_on_batch(obs[None].astype("float32")))[0].argmax())
        obs, _, terminated, truncated, _ = env.step(action + info["action_start"])
        frames.append(env.render())
        done = terminated or truncated
    fps = env.metadata.get("render_fps", 30)
    env.close()
    images = [Image.fromarray(f).resize((f.shape[1] // 2, f.shape[0] // 2)) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)


def plot_returns(episodes: list, path, title: str, total_steps: int) -> None:
    """Every training episode's return at the step it ended, with the mean of the last 20."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    steps, returns = np.asarray(episodes).T
    window = min(20, len(returns))
    mean = np.convolve(returns, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, returns, ".", alpha=0.35, label="episode")
    ax.plot(steps[window - 1:], mean, label=f"mean of the last {window}")
    ax.set_xlim(0, total_steps)
    ax.set_xlabel("environment step")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
