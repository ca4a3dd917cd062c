"""Benchmarks of the dqn plugin: evaluation return per training seed, and environment steps per second per backend.

    python benchmarks/dqn.py train [--backend jax] [--seeds 0,1,2] [-- dlkit dqn options]
    python benchmarks/dqn.py speed [--backends tensorflow,jax,torch] [--steps 20000] [-- dlkit dqn options]

``train`` runs ``dlkit train dqn --seed S`` for each seed as a user would (defaults: CartPole-v1, 50,000
steps; ``-- --env Acrobot-v1`` for Acrobot) and reads each run's metrics.json: the mean return of the 100
greedy evaluation episodes, the training time and the environment steps per second of the whole loop
(acting, the replay buffer, the gradient steps and the checkpoints). ``speed`` runs the same command with a
shorter budget on each backend. Results are printed as Markdown and appended as JSON lines to
benchmarks/out/dqn.jsonl with the command and the load average before and after.

The reference run of the numbers in benchmarks/RESULTS.md:

    nice -n 5 python benchmarks/dqn.py train --backend jax --seeds 0,1,2
    nice -n 5 python benchmarks/dqn.py train --backend jax --seeds 0 -- --env Acrobot-v1
    nice -n 5 python benchmarks/dqn.py speed --steps 10000 --threads 1
"""
from __future__ import annotations

import argparse
import sys
import time

import common


def train_once(backend: str, seed: int, options: list[str], threads: int | None = None) -> dict:
    """One ``dlkit train dqn`` process; its metrics.json and the time the process took.

    ``threads`` sets OMP_NUM_THREADS: on a loaded 2-core machine PyTorch's default thread pool spins against
    the other processes (184 ms per gradient step at load 7, 13.5 ms with one thread).
    """
    done = common.train("dqn", backend, "--seed", str(seed), *options, tag=f"-seed{seed}",
                        env={"OMP_NUM_THREADS": str(threads)} if threads else None)
    metrics = done.metrics
    steps = metrics["steps_completed"]
    row = {"command": done.command, "omp_num_threads": threads, "backend": metrics["backend"], "seed": seed,
           "run": str(done.run), "env": metrics["dataset"], "steps": steps, "test": metrics["test"],
           "train_time_s": metrics["train_time_s"], "steps_per_s": round(steps / metrics["train_time_s"], 1),
           "process_wall_s": done.wall_s, "load_before": done.load_before, "load_after": done.load_after,
           "date": time.strftime("%Y-%m-%d %H:%M")}
    common.record("dqn", row)
    return row


def train(backend: str, seeds: list[int], options: list[str]) -> None:
    print("| env | seed | mean return (100 episodes) | std | min | steps | training s | steps/s | load before → after |")
    print("|---|---|---|---|---|---|---|---|---|")
    returns = []
    for seed in seeds:
        row = train_once(backend, seed, options)
        test = row["test"]
        returns.append(test["mean_return"])
        print(f"| {row['env']} | {seed} | {test['mean_return']:.1f} | {test['std_return']:.1f} | {test['min_return']:.0f} "
              f"| {row['steps']} | {row['train_time_s']} | {row['steps_per_s']} | {row['load_before']} → "
              f"{row['load_after']} |", flush=True)
    print(f"\nmean over {len(seeds)} seed(s): {sum(returns) / len(returns):.1f}; lowest {min(returns):.1f}")


def speed(backends: list[str], steps: int, options: list[str], threads: int | None) -> None:
    print("| backend | OMP_NUM_THREADS | steps | training s | env steps/s | load before → after |")
    print("|---|---|---|---|---|---|")
    for backend in backends:
        row = train_once(backend, 0, ["--total-steps", str(steps), *options], threads)
        print(f"| {backend} | {threads or '-'} | {row['steps']} | {row['train_time_s']} | {row['steps_per_s']} | "
              f"{row['load_before']} → "
              f"{row['load_after']} |", flush=True)


def main() -> None:
    argv = sys.argv[1:]
    options = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("train")
    t.add_argument("--backend", default="jax")
    t.add_argument("--seeds", default="0,1,2")
    s = sub.add_parser("speed")
    s.add_argument("--backends", default="tensorflow,jax,torch")
    s.add_argument("--steps", type=int, default=20000)
    s.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the training processes")
    args = parser.parse_args(argv)
    if args.what == "train":
        train(args.backend, [int(x) for x in args.seeds.split(",")], options)
    else:
        speed(args.backends.split(","), args.steps, options, args.threads)


if __name__ == "__main__":
    main()
