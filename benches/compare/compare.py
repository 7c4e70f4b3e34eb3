#!/usr/bin/env python3
"""Side by side: tideflow against Prefect 3, Prefect 1 and Dask on the same workloads.

Run it through `benches/compare/run.sh`, which creates the two venvs this script needs:
benches/compare/.venv (Prefect 3, prefect-dask, Dask; this script runs on it) and
benches/compare/.venv-prefect1 (Prefect 1 and the same Dask: Prefect 1 cannot share a
venv with Prefect 3), on whose Python the prefect1-dask measurements run.

Workloads (a trivial task `inc(x) = x + 1` in every framework):

    map ×1,000     inc mapped over range(1000); result: the sum of the outputs
    map ×10,000    inc mapped over range(10000)
    map ×100,000   inc mapped over range(100000)
    map ×10,000 of 1 ms   the map over 10,000 with each child sleeping 1 ms first
    map ×200 of 50 ms     the map over 200 with each child sleeping 50 ms first
                   (WORK_US below; the children read TIDEFLOW_BENCH_WORK_US)
    chain ×1,000   x = inc(0), then 999 times x = inc(x), each a dependent task
    data 50×10 MB  50 chunks of 10 MB made on the workers, each measured where it is
                   (length × first byte), then the measures summed: Dask and tideflow
                   on Dask only; tideflow reports the bytes its coordinator received

Frameworks:

    prefect   Prefect 3, `@flow` + `@task`, default task runner (ThreadPoolTaskRunner),
              ephemeral mode (no PREFECT_API_URL: Prefect starts its local server itself).
              map: `inc.map(range(n)).result()`; chain: `inc.submit(prev)` futures.
              Not run on maps over more than PREFECT_MAX_N (about 67 ms a task).
    dask      dask.distributed `LocalCluster(n_workers=2, threads_per_worker=1,
              processes=True)` on 127.0.0.1, no dashboard. map: `client.map` +
              `client.gather`; chain: `client.submit(inc, prev, pure=False)`.
    tideflow  the `scale` bench binary (benches/scale.rs), built with
              `cargo bench --bench scale --no-run` and run directly.
    tideflow-dask  the same binary with `--executor dask-local:2`: the flow's task
              attempts on a local Dask cluster of the same shape as the Dask cell's
              (2 worker processes, 1 thread each), reached through tideflow's bridge run
              by this venv's Python, with the Dask executor's adaptive batching on (its
              default; TIDEFLOW_DASK_BATCH is removed from the bench's environment). The
              bench runs the flow twice in one process and the second run is the run
              (the first starts the cluster); the startup is a fresh process's run over
              one element, which starts the cluster. Peak RSS is the coordinator's only.
    tideflow-dask-nobatch  the same as tideflow-dask with TIDEFLOW_DASK_BATCH=off in the
              bench's environment: one Dask task per task attempt, no batching.
    prefect-dask  Prefect 3 with prefect-dask's `DaskTaskRunner(address=...)` on a
              LocalCluster of the Dask cell's shape, started (and its 2 workers waited
              for, and Prefect's task engine imported on them) before the run, like the
              Prefect server; the same flows as `prefect`. The server's API URL is given
              to the workers (PREFECT_API_URL) and to the flow's settings: in ephemeral
              mode a Dask worker without it would start a Prefect server of its own.
              Not run on maps over more than PREFECT_MAX_N.
    prefect1-dask  Prefect 1 (.venv-prefect1), `Flow` with `inc.map(list(range(n)))`
              and a reducing task summing the outputs (chain: n dependent copies of
              inc), run by `flow.run(executor=DaskExecutor(address=...))` on a
              LocalCluster of the same shape started before the run. No server: Prefect
              1's home is in the run's scratch directory. Not run on maps over more than
              PREFECT1_MAX_N (about 7.5 ms a task).

The run of every framework on Dask is timed on a cluster that is up and whose 2 workers
have joined; the cluster start is in the startup. The table's last column is raw Dask's
run time over each framework's: its throughput relative to Dask on the same cluster shape.
Cells not measured (the Prefects' large maps) are rows marked skipped, and notes.

Every measurement runs in a fresh process, so peak RSS is per workload. Timings:

    run       inside the process, from just before the flow / graph starts until the
              results are back (Prefect: the flow call, Prefect 1: flow.run(); Dask:
              first submit to gather; tideflow: the bench's build_s + wall_s, graph
              building and the flow run).
    startup   from spawning the process until it is ready to run: interpreter start,
              imports, and the Prefect server start and/or the Dask cluster start. tideflow:
              spawn to exit of the same binary over one element, minus that run (the
              bench times a plain-loop floor after its run, so its own exit comes late).
    wall      from spawning the process until the results are back (startup + run).

Each measurement also records how much CPU other processes on the machine used meanwhile
(sampled from /proc), to show when something else skewed the timings.

Peak RSS is the sum of the peak RSS (VmHWM, from /proc) of every process of the framework,
read inside the run right after the results are back: the Python process plus Prefect's
server process, and/or plus Dask's worker processes (and the processes that start them).
For tideflow it is the bench process's VmHWM, which the bench reads after its run. (The
ru_maxrss that wait4 returns is kept in results.json only: on Linux it also counts the
image of the driver that the child was forked from before it exec'd.)

Every result is checked against its expected value; a wrong value fails the run.
"""

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WORK = os.path.join(HERE, ".work")

WORKLOADS = {
    "map1k": ("map", 1_000),
    "map10k": ("map", 10_000),
    "map100k": ("map", 100_000),
    "work1ms": ("map", 10_000),
    "work50ms": ("map", 200),
    "chain1k": ("chain", 1_000),
    "data50": ("data", 50),
}
# Work each mapped child does first (a sleep), in µs, by workload: the mapped task takes
# `TIDEFLOW_BENCH_WORK_US` (`inc` here, `add1_working` in benches/workloads).
WORK_US = {"work1ms": 1_000, "work50ms": 50_000}
# Prefect 3 runs these at about 67 ms a task (minutes for 10,000), on its own task runner
# or on Dask: not measured on more.
PREFECT_MAX_N = 10_000
# Prefect 1 on Dask runs these at about 7.5 ms a task (75 s for 10,000, some 12 minutes
# for 100,000): not measured on more.
PREFECT1_MAX_N = 10_000
# Bytes in a chunk of the data workload (as in benches/data.rs).
CHUNK = 10_000_000
FRAMEWORKS = (
    "tideflow",
    "prefect",
    "dask",
    "tideflow-dask",
    "tideflow-dask-nobatch",
    "prefect-dask",
    "prefect1-dask",
)
# Prefect 1 cannot share a venv with Prefect 3: run.sh makes this second one for it.
PREFECT1_VENV = os.path.join(HERE, ".venv-prefect1")
PREFECT1_PYTHON = os.path.join(PREFECT1_VENV, "bin", "python")
LABELS = {
    "map1k": "map ×1,000",
    "map10k": "map ×10,000",
    "map100k": "map ×100,000",
    "work1ms": "map ×10,000 of 1 ms",
    "work50ms": "map ×200 of 50 ms",
    "chain1k": "chain ×1,000",
    "data50": "data 50×10 MB",
    "tideflow": "tideflow",
    "prefect": "Prefect 3",
    "dask": "Dask",
    "tideflow-dask": "tideflow on Dask (batching)",
    "tideflow-dask-nobatch": "tideflow on Dask, batching off",
    "prefect-dask": "Prefect 3 on Dask",
    "prefect1-dask": "Prefect 1 on Dask",
}
WORKER_TIMEOUT_S = 1800


def expected_value(kind, n):
    """map: sum of inc(i) for i in range(n); chain: inc applied n times to 0."""
    if kind == "map":
        return n * (n + 1) // 2
    if kind == "chain":
        return n
    if kind == "data":
        return sum((i % 100 + 1) * CHUNK for i in range(n))
    raise ValueError(kind)


def inc(x):
    work = int(os.environ.get("TIDEFLOW_BENCH_WORK_US", "0"))
    if work:
        time.sleep(work / 1e6)
    return x + 1


def make_chunk(i):
    return bytes([i % 100 + 1]) * CHUNK


def measure_chunk(c):
    return len(c) * c[0]


# --------------------------------------------------------------------------------------
# Process accounting (stdlib only: /proc)
# --------------------------------------------------------------------------------------

def vm_hwm_kib(pid):
    """Peak resident set size of a live process, in KiB (VmHWM)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def descendants(pid):
    """Pids of all live descendants of `pid`."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces and parentheses
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
        return " ".join(a.decode(errors="replace") for a in args if a)[:120]
    except OSError:
        return "?"


def process_tree_rss():
    """Peak RSS of this process and of every live descendant."""
    me = os.getpid()
    procs = [{"pid": me, "cmd": "main", "hwm_kib": vm_hwm_kib(me)}]
    for pid in descendants(me):
        procs.append({"pid": pid, "cmd": comm(pid), "hwm_kib": vm_hwm_kib(pid)})
    return {"total_kib": sum(p["hwm_kib"] for p in procs), "processes": procs}


# --------------------------------------------------------------------------------------
# Workers: one fresh process per (framework, workload) measurement
# --------------------------------------------------------------------------------------

def prefect_worker(kind, n):
    from prefect import flow, task
    from prefect.server.api.server import SubprocessASGIServer

    # Ephemeral mode starts this server lazily on the first API call; start it here so
    # that its start-up is reported as start-up rather than hidden in the flow run.
    SubprocessASGIServer().start()

    @task
    def inc_task(x):
        return inc(x)  # x + 1, after TIDEFLOW_BENCH_WORK_US of sleep (the work1ms, work50ms)

    @flow
    def map_flow(n):
        futures = inc_task.map(range(n))
        return sum(futures.result())

    @flow
    def chain_flow(n):
        future = inc_task.submit(0)
        for _ in range(n - 1):
            future = inc_task.submit(future)
        return future.result()

    t_ready = time.monotonic()
    value = (map_flow if kind == "map" else chain_flow)(n)
    t_done = time.monotonic()
    return t_ready, t_done, value, process_tree_rss(), lambda: None


def local_cluster():
    """The Dask cluster of every framework on Dask: 2 worker processes of 1 thread each."""
    from dask.distributed import LocalCluster

    return LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
    )


def warm_cluster(*modules):
    """`local_cluster()` with both workers up and `modules` imported on them: a worker
    imports a framework's task engine on its first task (seconds), a once-per-cluster
    cost counted as start-up, as the cluster start is."""
    import importlib

    from dask.distributed import Client

    cluster = local_cluster()
    client = Client(cluster)
    client.wait_for_workers(2)
    for module in modules:
        client.run(importlib.import_module, module)
    client.close()
    return cluster


def prefect_dask_worker(kind, n):
    """Prefect 3 with prefect-dask's DaskTaskRunner on a LocalCluster started beforehand."""
    from prefect import flow, task
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_dask import DaskTaskRunner

    server = SubprocessASGIServer()
    server.start()
    # The tasks run (and report their states) in the Dask workers. In ephemeral mode a
    # worker that has no API URL starts a temporary Prefect server of its own (one per
    # worker, each with its own database), so the URL of this process's server goes to the
    # workers through the environment they inherit, and to the task runs through the
    # settings that the flow serializes into each task's context.
    os.environ["PREFECT_API_URL"] = server.api_url
    cluster = warm_cluster("prefect_dask.client", "prefect.task_engine")
    runner = DaskTaskRunner(address=cluster.scheduler_address)

    @task
    def inc_task(x):
        return inc(x)

    @flow(task_runner=runner)
    def map_flow(n):
        futures = inc_task.map(range(n))
        return sum(futures.result())

    @flow(task_runner=runner)
    def chain_flow(n):
        future = inc_task.submit(0)
        for _ in range(n - 1):
            future = inc_task.submit(future)
        return future.result()

    t_ready = time.monotonic()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        value = (map_flow if kind == "map" else chain_flow)(n)
    t_done = time.monotonic()
    rss = process_tree_rss()
    return t_ready, t_done, value, rss, cluster.close


def prefect1_dask_worker(kind, n):
    """Prefect 1 (.venv-prefect1): `flow.run(executor=DaskExecutor(address=...))`."""
    from prefect import Flow, task
    from prefect.executors import DaskExecutor

    cluster = warm_cluster("prefect.engine.task_runner")

    @task
    def inc_task(x):
        return inc(x)

    @task
    def total(xs):
        return sum(xs)

    with Flow(f"{kind}-{n}") as flow:
        if kind == "map":
            out = total(inc_task.map(list(range(n))))
        else:
            out = inc_task(0)
            for _ in range(n - 1):
                out = inc_task(out)

    t_ready = time.monotonic()
    state = flow.run(executor=DaskExecutor(address=cluster.scheduler_address))
    t_done = time.monotonic()
    if not state.is_successful():
        raise RuntimeError(f"Prefect 1 flow run failed: {state!r}")
    value = state.result[out].result
    rss = process_tree_rss()
    return t_ready, t_done, value, rss, cluster.close


def dask_worker(kind, n):
    from dask.distributed import Client

    cluster = local_cluster()
    client = Client(cluster)
    client.wait_for_workers(2)

    t_ready = time.monotonic()
    if kind == "map":
        futures = client.map(inc, range(n))
        value = sum(client.gather(futures))
    elif kind == "data":
        chunks = client.map(make_chunk, range(n), pure=False)
        sizes = client.map(measure_chunk, chunks, pure=False)
        value = client.submit(sum, sizes, pure=False).result()
    else:
        futures = [client.submit(inc, 0, pure=False)]
        for _ in range(n - 1):
            futures.append(client.submit(inc, futures[-1], pure=False))
        value = futures[-1].result()
    t_done = time.monotonic()
    rss = process_tree_rss()

    def teardown():
        client.close()
        cluster.close()

    return t_ready, t_done, value, rss, teardown


def worker_main(framework, kind, n, out_path):
    t_start = time.monotonic()
    run = {
        "prefect": prefect_worker,
        "dask": dask_worker,
        "prefect-dask": prefect_dask_worker,
        "prefect1-dask": prefect1_dask_worker,
    }[framework]
    t_ready, t_done, value, rss, teardown = run(kind, n)
    with open(out_path, "w") as f:
        json.dump(
            {
                "t_start": t_start,
                "t_ready": t_ready,
                "t_done": t_done,
                "value": value,
                "rss": rss,
            },
            f,
        )
    teardown()


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------

class OtherCpu:
    """CPU seconds used by processes outside a measured session, sampled from /proc.

    An indicator of interference (builds, tests, anything else on the machine) rather than
    an exact count: a process that lives less than one sampling interval is missed.
    """

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, session, interval=0.5):
        self.session, self.interval = session, interval
        self.me = os.getpid()
        self.first, self.last = self._snapshot(), {}
        self.last.update(self.first)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _snapshot(self):
        snap = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == self.me:
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) == self.session:  # field 6, the session id
                continue
            snap[(int(entry), fields[19])] = int(fields[11]) + int(fields[12])  # utime+stime
        return snap

    def _loop(self):
        while not self.done.wait(self.interval):
            self.last.update(self._snapshot())

    def stop(self):
        self.done.set()
        self.thread.join()
        self.last.update(self._snapshot())
        ticks = sum(t - self.first.get(key, 0) for key, t in self.last.items())
        return ticks / self.TICK


# CPU seconds that processes other than the measured ones used during the last measurement.
OTHER_CPU = {"last": 0.0}


def spawn_and_wait(cmd, env, log_path, timeout=WORKER_TIMEOUT_S):
    """Run `cmd` in its own session; returns (spawn time, exit time, status, ru_maxrss KiB).

    Also records in OTHER_CPU how much CPU the rest of the machine used meanwhile.
    """
    with open(log_path, "wb") as log:
        t_spawn = time.monotonic()
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=REPO,
        )
        other = OtherCpu(session=proc.pid)
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        t_exit = time.monotonic()
        proc.returncode = os.waitstatus_to_exitcode(status)
        OTHER_CPU["last"] = other.stop()
    # Anything the run left behind in its session (it should be nothing) is ours to end.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return t_spawn, t_exit, proc.returncode, usage.ru_maxrss


def tail(path, lines=30):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def python_env(framework, run_dir):
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("PREFECT_"):
            del env[key]
    env["DO_NOT_TRACK"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["DASK_TEMPORARY_DIRECTORY"] = os.path.join(WORK, "dask-tmp")
    os.makedirs(env["DASK_TEMPORARY_DIRECTORY"], exist_ok=True)
    if framework in ("prefect", "prefect-dask"):
        env["PREFECT_HOME"] = os.path.join(run_dir, "prefect-home")
        env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    if framework == "prefect1-dask":
        # flow.run() needs no server; keep Prefect 1's home (and any file it writes) here.
        env["PREFECT__HOME_DIR"] = os.path.join(run_dir, "prefect1-home")
        env["PREFECT__USER_CONFIG_PATH"] = os.path.join(run_dir, "prefect1-home", "config.toml")
    return env


def python_for(framework):
    """The interpreter a framework's worker process runs on."""
    if framework == "prefect1-dask":
        return PREFECT1_PYTHON
    return sys.executable


def prepare_prefect_home():
    """A Prefect home whose database is created and migrated once, outside any measurement.

    Each Prefect measurement gets a copy, so each starts as a user's second run would:
    an existing, empty database (the very first start also creates and migrates it).
    """
    import shutil

    template = os.path.join(WORK, "prefect-home-template")
    shutil.rmtree(template, ignore_errors=True)
    os.makedirs(template)
    env = python_env("prefect", WORK)
    env["PREFECT_HOME"] = template
    log = os.path.join(WORK, "logs", "prefect-prime.log")
    code = (
        "import time; t = time.monotonic()\n"
        "from prefect.server.api.server import SubprocessASGIServer\n"
        "s = SubprocessASGIServer(); s.start(); print('first start', time.monotonic() - t)\n"
        "s.stop()\n"
    )
    t0, t1, rc, _ = spawn_and_wait([sys.executable, "-c", code], env, log, timeout=300)
    if rc != 0:
        sys.exit(f"priming the Prefect database failed (exit {rc}):\n{tail(log)}")
    return template, t1 - t0


def measure_python(framework, workload, rep, prefect_template):
    import shutil

    kind, n = WORKLOADS[workload]
    run_dir = os.path.join(WORK, "runs", f"{framework}-{workload}-{rep}")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    if framework in ("prefect", "prefect-dask"):
        shutil.copytree(prefect_template, os.path.join(run_dir, "prefect-home"))
    out = os.path.join(run_dir, "result.json")
    log = os.path.join(WORK, "logs", f"{framework}-{workload}-{rep}.log")
    cmd = [python_for(framework), os.path.abspath(__file__), "_worker", framework, kind, str(n),
           out]
    env = python_env(framework, run_dir)
    env["TIDEFLOW_BENCH_WORK_US"] = str(WORK_US.get(workload, 0))
    t_spawn, t_exit, rc, maxrss = spawn_and_wait(cmd, env, log)
    other_cpu = OTHER_CPU["last"]
    if rc != 0 or not os.path.exists(out):
        sys.exit(f"{framework} {workload} failed (exit {rc}); log {log}:\n{tail(log)}")
    with open(out) as f:
        r = json.load(f)
    with open(log, errors="replace") as f:
        text = f.read()
    result = {
        "value": r["value"],
        "run_s": r["t_done"] - r["t_ready"],
        "startup_s": r["t_ready"] - t_spawn,
        "wall_s": r["t_done"] - t_spawn,
        "exit_after_results_s": t_exit - r["t_done"],
        "peak_rss_mib": r["rss"]["total_kib"] / 1024,
        "wait4_ru_maxrss_mib": maxrss / 1024,
        "other_cpu_s": other_cpu,
        "process_spawn_to_exit_s": t_exit - t_spawn,
        "processes": r["rss"]["processes"],
        "log": os.path.relpath(log, REPO),
    }
    if framework in ("prefect", "prefect-dask"):
        result["log_dropping_message_lines"] = text.count("dropping message")
        result["log_error_lines"] = sum(1 for l in text.splitlines() if "| ERROR" in l)
        result["log_warning_lines"] = sum(1 for l in text.splitlines() if "| WARNING" in l)
        result["log_temporary_servers"] = text.count("Starting temporary server")
    if framework == "prefect1-dask":
        result["log_error_lines"] = sum(1 for l in text.splitlines() if "ERROR - prefect" in l)
        result["log_warning_lines"] = sum(1 for l in text.splitlines()
                                          if "WARNING - prefect" in l or "Warning:" in l)
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


# ---- tideflow: the `scale` bench binary --------------------------------------------

def build_tideflow(bench="scale"):
    """Build benches/<bench>.rs in the bench (release) profile; returns the executable."""
    if not os.path.exists(os.path.join(REPO, "benches", f"{bench}.rs")):
        return None
    cmd = ["cargo", "bench", "--bench", bench, "--no-run", "--message-format=json"]
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE)  # cargo's progress: stderr
    if proc.returncode != 0:
        sys.exit("building the tideflow bench failed (cargo's errors above)")
    exe = None
    for line in proc.stdout.decode().splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if (
            msg.get("reason") == "compiler-artifact"
            and msg.get("target", {}).get("name") == bench
            and msg.get("executable")
        ):
            exe = msg["executable"]
    if exe is None:
        sys.exit(f"cargo built the {bench} bench but reported no executable")
    return exe


def run_scale(exe, kind, n, mode, log, extra=(), env=None):
    """One fresh process of the scale bench: `scale <kind> <N> --sync|--async --json`.

    The same binary `cargo bench --bench scale -- map 1000 --sync --json` runs (cargo
    adds `--bench`); running it directly keeps cargo out of the wall time and RSS.
    Returns (spawn-to-exit seconds, ru_maxrss KiB, the bench's JSON record).
    """
    cmd = [exe, kind, str(n), f"--{mode}", "--json", "--bench", *extra]
    t_spawn, t_exit, rc, maxrss = spawn_and_wait(cmd, env or dict(os.environ), log)
    if rc != 0:
        sys.exit(f"tideflow {kind} {n} failed (exit {rc}); log {log}:\n{tail(log)}")
    records = []
    with open(log, errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except ValueError:
                    pass
    if not records:
        sys.exit(f"tideflow {kind} {n}: no JSON line in the bench output; log {log}:\n{tail(log)}")
    body = "working" if "--work-us" in extra else mode
    for rec in records:
        if rec.get("workload") != kind or rec.get("n") != n or rec.get("body") != body:
            sys.exit(f"tideflow: the bench reported {rec}, not {kind} over {n} ({mode})")
    return t_exit - t_spawn, maxrss, (records[-1] if not extra or extra[:1] == ("--work-us",) else records)


def flow_seconds(rec):
    # A flow's graph is built by the user's code before it runs (`flow!` does it when the
    # flow is called); Prefect and Dask build theirs inside the timed region, so count it.
    return float(rec["build_s"]) + float(rec["wall_s"])


def measure_tideflow(exe, workload, rep, mode):
    kind, n = WORKLOADS[workload]
    log = os.path.join(WORK, "logs", f"tideflow-{mode}-{workload}-{rep}.log")
    work = ("--work-us", str(WORK_US[workload])) if workload in WORK_US else ()
    proc_s, maxrss, rec = run_scale(exe, kind, n, mode, log, work)
    other_cpu = OTHER_CPU["last"]
    run_s = flow_seconds(rec)
    # After its run the bench times a plain-loop floor (up to ~50 ms), so spawn-to-exit
    # overstates the wall time. Start-up is measured instead by a fresh process of the same
    # binary over one element (its run and floor take microseconds): spawn-to-exit minus
    # its flow time.
    log1 = os.path.join(WORK, "logs", f"tideflow-{mode}-{workload}-{rep}-startup.log")
    proc1_s, _, rec1 = run_scale(exe, "map", 1, mode, log1)
    startup_s = max(proc1_s - flow_seconds(rec1), 0.0)
    return {
        # The bench checks the flow's output itself (every element of a map, the end of a
        # chain) and panics, exit code 101, on a wrong one; exit code 0 means it was right.
        "value": expected_value(kind, n),
        "run_s": run_s,
        "startup_s": startup_s,
        "wall_s": startup_s + run_s,
        "process_spawn_to_exit_s": proc_s,
        "other_cpu_s": other_cpu,
        "exit_after_results_s": None,
        # VmHWM read by the bench itself right after the run (before its floor loop).
        "peak_rss_mib": float(rec["peak_rss_mib"]),
        "wait4_ru_maxrss_mib": maxrss / 1024,
        "bench_record": rec,
        "log": os.path.relpath(log, REPO),
    }


def tideflow_dask_env(framework):
    """The environment of a tideflow-on-Dask bench process.

    `tideflow-dask` runs with the Dask executor's default (adaptive batching on);
    `tideflow-dask-nobatch` sets TIDEFLOW_DASK_BATCH=off, which turns the batching off.
    """
    env = dict(os.environ)
    env["TIDEFLOW_PYTHON"] = sys.executable  # this venv's Python has Dask's client
    env["DASK_TEMPORARY_DIRECTORY"] = os.path.join(WORK, "dask-tmp")
    env.pop("TIDEFLOW_DASK_BATCH", None)
    if framework == "tideflow-dask-nobatch":
        env["TIDEFLOW_DASK_BATCH"] = "off"
    return env


def measure_tideflow_data(exe, workload, rep, framework="tideflow-dask"):
    """The data bench (benches/data.rs): two runs in one process; the second is the run."""
    kind, n = WORKLOADS[workload]
    log = os.path.join(WORK, "logs", f"{framework}-{workload}-{rep}.log")
    env = tideflow_dask_env(framework)
    cmd = [exe, str(n), "--repeat", "2", "--json", "--bench"]
    t_spawn, t_exit, rc, maxrss = spawn_and_wait(cmd, env, log)
    if rc != 0:
        sys.exit(f"tideflow data {n} failed (exit {rc}); log {log}:\n{tail(log)}")
    with open(log, errors="replace") as f:
        recs = [json.loads(l) for l in f if l.startswith("{")]
    if len(recs) != 2:
        sys.exit(f"tideflow data {n}: expected 2 runs in the bench output; log {log}")
    first, second = recs
    return {
        "value": second["output"],
        "run_s": second["wall_s"],
        # The first run starts the cluster: its extra time over the second is the startup.
        "startup_s": max(first["wall_s"] - second["wall_s"], 0.0),
        "wall_s": first["wall_s"],
        "process_spawn_to_exit_s": t_exit - t_spawn,
        "other_cpu_s": OTHER_CPU["last"],
        "exit_after_results_s": None,
        "peak_rss_mib": None,
        "wait4_ru_maxrss_mib": maxrss / 1024,
        "bytes_received": second["bytes_received"],
        "data_bytes": second["data_bytes"],
        "bench_record": recs,
        "log": os.path.relpath(log, REPO),
    }


def measure_tideflow_dask(exe, workload, rep, mode, framework="tideflow-dask"):
    kind, n = WORKLOADS[workload]
    log = os.path.join(WORK, "logs", f"{framework}-{mode}-{workload}-{rep}.log")
    env = tideflow_dask_env(framework)
    extra = ("--executor", "dask-local:2", "--repeat", "2")
    if workload in WORK_US:
        extra = extra + ("--work-us", str(WORK_US[workload]))
    proc_s, maxrss, recs = run_scale(exe, kind, n, mode, log, extra, env)
    if len(recs) != 2:
        sys.exit(f"{framework} {workload}: expected 2 runs in the bench output; log {log}")
    run_s = flow_seconds(recs[1])
    # Start-up: a fresh process over one element, whose single run starts the cluster
    # (and the bridge) and then runs a flow of microseconds.
    log1 = os.path.join(WORK, "logs", f"{framework}-{mode}-{workload}-{rep}-startup.log")
    _, _, recs1 = run_scale(exe, "map", 1, mode, log1, ("--executor", "dask-local:2"), env)
    startup_s = flow_seconds(recs1[0])
    return {
        "value": expected_value(kind, n),
        "run_s": run_s,
        "startup_s": startup_s,
        "wall_s": startup_s + run_s,
        "process_spawn_to_exit_s": proc_s,
        "other_cpu_s": OTHER_CPU["last"],
        "exit_after_results_s": None,
        "peak_rss_mib": float(recs[1]["peak_rss_mib"]),
        "wait4_ru_maxrss_mib": maxrss / 1024,
        "bench_record": recs,
        "log": os.path.relpath(log, REPO),
    }


# ---- table ---------------------------------------------------------------------------

def fmt_s(v):
    if v is None:
        return "—"
    if v < 0.001:
        return f"{v * 1e6:.1f} µs"  # e.g. a run a task of tideflow in process
    if v < 0.01:
        return f"{v * 1000:.2f} ms"
    if v < 1:
        return f"{v * 1000:.0f} ms"
    return f"{v:.2f} s"


def fmt_mib(v):
    if v is None:
        return "n/a"
    return f"{v:.1f}" if v < 10 else f"{v:.0f}"


def fmt_x(v):
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:,.0f}×"
    if v >= 10:
        return f"{v:.0f}×"
    if v < 0.1:
        return f"{v:.2g}×"  # e.g. 0.023×: a framework far slower than the reference
    return f"{v:.1f}×"


def median_cell(samples, n):
    cell = {}
    for key in ("run_s", "startup_s", "wall_s", "peak_rss_mib", "exit_after_results_s"):
        vals = [s[key] for s in samples if s.get(key) is not None]
        cell[key] = statistics.median(vals) if vals else None
    cell["run_per_task_s"] = cell["run_s"] / n if cell["run_s"] is not None else None
    return cell


def render_table(cells, workloads, frameworks, tideflow_key, skipped=()):
    """The markdown table; `skipped`: (workload, framework, why) cells not measured.

    Two ratio columns: the run and wall time of each framework over tideflow's (the
    `tideflow_key` row: how many times faster tideflow is), and raw Dask's run time over
    each framework's (its throughput relative to raw Dask on the same cluster: below 1×
    is slower than Dask, above is faster).
    """
    ref = LABELS.get(tideflow_key, tideflow_key) if tideflow_key else "tideflow"
    header = (
        f"| workload | framework | run | run a task | startup | wall incl. startup "
        f"| peak RSS (MiB) "
        f"| {ref} speed-up (run) | {ref} speed-up (wall incl. startup) "
        f"| throughput vs Dask (run) |"
    )
    rows = [header, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    skip = {(w, fw): why for w, fw, why in skipped}
    for w in workloads:
        tf = cells.get((w, tideflow_key))
        dask = cells.get((w, "dask"))
        for fw in frameworks:
            c = cells.get((w, fw))
            if c is None:
                if (w, fw) in skip:
                    rows.append(f"| {LABELS[w]} | {LABELS.get(fw, fw)} | skipped "
                                f"({skip[(w, fw)]}) | — | — | — | — | — | — | — |")
                continue
            if fw == tideflow_key or tf is None:
                up_run = up_wall = None
            else:
                up_run = c["run_s"] / tf["run_s"]
                up_wall = c["wall_s"] / tf["wall_s"]
            vs_dask = None if fw == "dask" or dask is None else dask["run_s"] / c["run_s"]
            rows.append(
                f"| {LABELS[w]} | {LABELS.get(fw, fw)} | {fmt_s(c['run_s'])} "
                f"| {fmt_s(c['run_s'] / WORKLOADS[w][1])} "
                f"| {fmt_s(c['startup_s'])} | {fmt_s(c['wall_s'])} "
                f"| {fmt_mib(c['peak_rss_mib'])} | {fmt_x(up_run)} | {fmt_x(up_wall)} "
                f"| {fmt_x(vs_dask)} |"
            )
    return "\n".join(rows)


def versions():
    def out(cmd):
        try:
            return subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True).stdout.strip()
        except OSError:
            return None

    from importlib.metadata import PackageNotFoundError, version

    def maybe_version(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    prefect1 = None  # the versions in .venv-prefect1, if run.sh made it
    if os.path.exists(PREFECT1_PYTHON):
        code = ("import json, platform; from importlib.metadata import version; "
                "print(json.dumps({'python': platform.python_version(), "
                "**{n: version(n) for n in ('prefect', 'dask', 'distributed')}}))")
        try:
            prefect1 = json.loads(out([PREFECT1_PYTHON, "-c", code]) or "null")
        except ValueError:
            pass

    cpu = None
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "rustc": out(["rustc", "--version"]),
        "python": platform.python_version(),
        "prefect": version("prefect"),
        "fastapi": version("fastapi"),
        "dask": version("dask"),
        "distributed": version("distributed"),
        "prefect_dask": maybe_version("prefect-dask"),
        "prefect1_venv": prefect1,
        "tideflow_commit": out(["git", "rev-parse", "--short", "HEAD"]),
        "tideflow_worktree_dirty": bool(out(["git", "status", "--porcelain", "--untracked-files=no"])),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help=f"comma-separated, from {','.join(WORKLOADS)}")
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                    help=f"comma-separated, from {','.join(FRAMEWORKS)}")
    ap.add_argument("--repeat", type=int, default=3,
                    help="fresh processes per cell; the table shows medians (default 3)")
    ap.add_argument("--tideflow-mode", choices=("sync", "async"), default="sync",
                    help="tideflow task flavour: plain fn (sync, default) or async fn")
    ap.add_argument("--out", default=os.path.join(HERE, "results.json"))
    args = ap.parse_args()
    workloads = [w for w in args.workloads.split(",") if w]
    frameworks = [f for f in args.frameworks.split(",") if f]
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w}")
    for f in frameworks:
        if f not in FRAMEWORKS:
            ap.error(f"unknown framework {f}")

    os.makedirs(os.path.join(WORK, "logs"), exist_ok=True)
    notes = []
    load_at_start = open("/proc/loadavg").read().split()[:3]
    info = versions()  # before the build: the commit and work tree the bench is built from
    info["loadavg_at_start"] = load_at_start
    if float(load_at_start[0]) > 1.0:
        print(f"warning: load average {load_at_start[0]} at start: other work on this "
              f"machine will skew the timings", flush=True)

    tideflow_fws = ("tideflow", "tideflow-dask", "tideflow-dask-nobatch")
    exe = None
    if any(f in frameworks for f in tideflow_fws):
        print("building the tideflow scale bench (cargo bench --bench scale --no-run) ...",
              flush=True)
        exe = build_tideflow()
        if exe is None:
            print("benches/scale.rs does not exist yet: skipping tideflow", flush=True)
            notes.append("tideflow skipped: benches/scale.rs missing")
            frameworks = [f for f in frameworks if f not in tideflow_fws]

    data_exe = None
    if "data50" in workloads and any(f in frameworks for f in tideflow_fws[1:]):
        print("building the tideflow data bench (cargo bench --bench data --no-run) ...", flush=True)
        data_exe = build_tideflow("data")

    if "prefect1-dask" in frameworks and not os.path.exists(PREFECT1_PYTHON):
        sys.exit(f"{os.path.relpath(PREFECT1_VENV, REPO)} is missing: run this through "
                 f"benches/compare/run.sh, which creates it (Prefect 1 and Dask)")

    # Cells not measured: each framework's own workloads only, and the two Prefects on
    # their maps of at most PREFECT_MAX_N / PREFECT1_MAX_N children (they would take many
    # minutes beyond).
    skipped = []
    for w in workloads:
        kind, n = WORKLOADS[w]
        for fw in frameworks:
            if fw in ("prefect", "prefect-dask") and n > PREFECT_MAX_N:
                skipped.append((w, fw, f"n > {PREFECT_MAX_N:,}: ~67 ms a task"))
            elif fw == "prefect1-dask" and n > PREFECT1_MAX_N:
                skipped.append((w, fw, f"n > {PREFECT1_MAX_N:,}: ~7.5 ms a task"))
    skip = {(w, fw) for w, fw, _ in skipped}

    prefect_template = None
    if any(fw in ("prefect", "prefect-dask") and (w, fw) not in skip
           and WORKLOADS[w][0] != "data" for w in workloads for fw in frameworks):
        print("creating and migrating a Prefect database (not measured) ...", flush=True)
        prefect_template, first_start = prepare_prefect_home()
        notes.append(f"Prefect's first server start (creates and migrates its database), "
                     f"not in the table: {first_start:.1f} s")

    width = max(len(LABELS[f]) for f in frameworks) if frameworks else 10

    samples = {}
    for rep in range(args.repeat):
        for w in workloads:
            for fw in frameworks:
                if WORKLOADS[w][0] == "data" and fw not in ("dask", *tideflow_fws[1:]):
                    continue  # the data workload compares Dask with tideflow on Dask
                if (w, fw) in skip:
                    continue
                if fw.startswith("tideflow-dask") and WORKLOADS[w][0] == "data":
                    s = measure_tideflow_data(data_exe, w, rep, fw)
                elif fw == "tideflow":
                    s = measure_tideflow(exe, w, rep, args.tideflow_mode)
                elif fw.startswith("tideflow-dask"):
                    s = measure_tideflow_dask(exe, w, rep, args.tideflow_mode, fw)
                else:
                    s = measure_python(fw, w, rep, prefect_template)
                kind, n = WORKLOADS[w]
                want = expected_value(kind, n)
                if s["value"] != want:
                    sys.exit(f"{fw} {w}: result {s['value']!r}, expected {want}")
                samples.setdefault((w, fw), []).append(s)
                busy = s["other_cpu_s"] / max(s["process_spawn_to_exit_s"], 1e-9)
                print(f"  [{rep + 1}/{args.repeat}] {LABELS[w]:<19} {LABELS[fw]:<{width}} "
                      f"run {fmt_s(s['run_s']):>9} ({fmt_s(s['run_s'] / n)} a task)  "
                      f"wall {fmt_s(s['wall_s']):>9}  "
                      f"peak RSS {fmt_mib(s['peak_rss_mib']):>5} MiB  value {s['value']} ok"
                      + (f"  (other processes used {busy:.0%} of a CPU meanwhile)"
                         if busy > 0.1 else ""),
                      flush=True)

    cells = {(w, fw): median_cell(v, WORKLOADS[w][1]) for (w, fw), v in samples.items()}
    key = next((f for f in tideflow_fws if f in frameworks), None)
    table = render_table(cells, workloads, frameworks, key, skipped)

    for w, fw, why in skipped:
        notes.append(f"{LABELS[fw]} {LABELS[w]}: not measured ({why}; "
                     f"{'PREFECT1_MAX_N' if fw == 'prefect1-dask' else 'PREFECT_MAX_N'} "
                     f"in compare.py)")
    for (w, fw), ss in samples.items():
        if fw in ("prefect", "prefect-dask"):
            dropped = sum(s["log_dropping_message_lines"] for s in ss)
            errors = sum(s["log_error_lines"] for s in ss)
            exit_s = statistics.median(s["exit_after_results_s"] for s in ss)
            servers = max(s["log_temporary_servers"] for s in ss)
            notes.append(
                f"{LABELS[fw]} {LABELS[w]}: process exit {exit_s:.1f} s after the results "
                f"(draining run-history events, stopping the server"
                + (", the cluster" if fw == "prefect-dask" else "")
                + f"); log lines 'dropping message': {dropped}, ERROR: {errors} over "
                f"{len(ss)} runs"
                + (f"; {servers} temporary Prefect servers started (expected 1)"
                   if servers != 1 else "")
            )
        elif fw == "prefect1-dask":
            errors = sum(s["log_error_lines"] for s in ss)
            exit_s = statistics.median(s["exit_after_results_s"] for s in ss)
            notes.append(f"{LABELS[fw]} {LABELS[w]}: process exit {exit_s:.1f} s after the "
                         f"results (stopping the cluster); log lines ERROR: {errors} over "
                         f"{len(ss)} runs")

    for (w, fw), ss in samples.items():
        if ss[0].get("bytes_received") is not None:
            got = statistics.median(s["bytes_received"] for s in ss)
            made = ss[0]["data_bytes"]
            notes.append(f"{LABELS[fw]} {LABELS[w]}: the coordinator received {got:,.0f} bytes "
                         f"for {made:,} bytes of data ({got / made:.4%})")
    for (w, fw), ss in samples.items():
        runs = [s["run_s"] for s in ss]
        if len(runs) > 1 and max(runs) > 1.2 * min(runs) and fw != "tideflow":
            notes.append(f"{LABELS[fw]} {LABELS[w]}: run times ranged {fmt_s(min(runs))} to "
                         f"{fmt_s(max(runs))} over {len(runs)} runs (the table shows the median)")
    other = sum(s["other_cpu_s"] for ss in samples.values() for s in ss)
    spent = sum(s["process_spawn_to_exit_s"] for ss in samples.values() for s in ss)
    notes.append(f"other processes on the machine used {other:.1f} CPU s during the "
                 f"{spent:.0f} s of measured processes ({other / max(spent, 1e-9):.0%} of a CPU)")
    print()
    print(f"{info['cpu']}, {info['nproc']} CPUs, {info['mem_gib']} GiB; {info['rustc']}; "
          f"Python {info['python']}, prefect {info['prefect']}, "
          f"prefect-dask {info['prefect_dask']}, dask {info['dask']}"
          + (f"; Prefect 1 venv: prefect {info['prefect1_venv']['prefect']}, "
             f"dask {info['prefect1_venv']['dask']}" if info["prefect1_venv"] else "")
          + f"; median of {args.repeat} fresh processes per cell")
    print()
    print(table)
    print()
    for n in notes:
        print(f"- {n}")

    with open(args.out, "w") as f:
        json.dump(
            {
                "machine_and_versions": info,
                "repeat": args.repeat,
                "tideflow_mode": args.tideflow_mode,
                "table_markdown": table,
                "medians": {f"{w}/{fw}": c for (w, fw), c in cells.items()},
                "samples": {f"{w}/{fw}": s for (w, fw), s in samples.items()},
                "skipped": [{"workload": w, "framework": fw, "why": why}
                            for w, fw, why in skipped],
                "notes": notes,
            },
            f,
            indent=2,
        )
    print(f"\nresults: {os.path.relpath(args.out, REPO)}")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "_worker":
        _, _, framework, kind, n, out = sys.argv
        worker_main(framework, kind, int(n), out)
    else:
        main()
