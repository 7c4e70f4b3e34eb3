"""The bridge between a tideflow coordinator and a Dask cluster.

The coordinator (a Rust program) starts this script with Python, writes routed attempt
frames on its standard input and reads reply frames on its standard output. The script
connects to a Dask scheduler (or starts a local cluster), has every Dask worker start one
long-lived tideflow worker process (the coordinator's own program in worker mode), and
runs each attempt as a Dask task on a worker, which hands the attempt to its tideflow
worker process over a pipe.

Data stays in the cluster. A Dask task's result is the attempt's returned value (bytes in
the task's wire format); its outcome travels apart, as a Dask event on this bridge's topic,
so the bridge never gathers a result it does not need. A small value rides along with its
outcome; a large one stays on its worker, held under its Dask key until the coordinator
releases it, and the attempts that read it take its future as an argument (Dask moves it
worker to worker). The coordinator asks for a value back only where it needs it.

Frames are a little-endian u32 length, then that many bytes (see the Rust `frame` module
for the table); this script reads the routing of an attempt and passes task data through.

Shipped inside the `flow-dask` crate; not meant to be run by hand.
"""

import argparse
import asyncio
import json
import operator
import os
import queue
import struct
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

PROTOCOL_MAGIC = b"TIDEFLOW-WORKER\n"
ATTEMPT = 2
ENDED = 3
REFUSED = 4
ROUTED = 6
HELD = 7
RECOMPUTED = 8
RELEASE = 9
BATCH = 10
BATCH_DONE = 11

# The exit status of a tideflow worker process that stopped because a sync attempt ran
# past its timeout (its thread cannot be stopped otherwise): `worker::STOPPED_AFTER_TIMEOUT`.
STOPPED_AFTER_TIMEOUT = 3

# A returned value up to this size travels with its outcome; a larger one stays on the
# worker that made it unless the coordinator asked for it.
INLINE = 16 * 1024

# How long a call to the tideflow process may take and still count as short; a task whose
# last two calls were short runs on the Dask worker's event loop (`attempt_quick`).
SHORT = 0.001

# A batch running longer than this reports the outcomes it has so far (and records them
# with the scheduler, so that a run of the batch again after its worker died skips them).
FLUSH = 0.05


# Where the coordinator reads: standard output, until main() keeps it for frames alone.
OUT = None


def fail(message):
    """Tells the coordinator why the bridge cannot start, then exits."""
    line = (json.dumps({"error": message}) + "\n").encode()
    if OUT is not None:
        OUT.write(line)
        OUT.flush()
    else:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
    sys.exit(1)


try:
    import msgpack
    from distributed import Client, LocalCluster, Semaphore, get_worker
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError as e:  # pragma: no cover - depends on the machine
    fail(
        "Python at %s cannot import Dask's client (%s): install it with "
        "`%s -m pip install 'distributed==2026.8.0'`, or point TIDEFLOW_PYTHON at a Python that has it"
        % (sys.executable, e, sys.executable)
    )


def read_exact(stream, n):
    """Exactly n bytes, or None at the end of the stream."""
    chunks = []
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_parts(stream):
    """One frame as its length prefix and its body, or None at the end of the stream."""
    head = read_exact(stream, 4)
    if head is None:
        return None
    (length,) = struct.unpack("<I", head)
    body = read_exact(stream, length)
    if body is None:
        return None
    return head, body


def read_frame(stream):
    """One frame (length prefix included), or None at the end of the stream."""
    parts = read_parts(stream)
    return None if parts is None else parts[0] + parts[1]


def framed(kind, body):
    """A frame of `kind` around `body`."""
    return struct.pack("<IB", len(body) + 1, kind) + body


def refused(ticket, message):
    """A refused frame, as the Rust side reads it."""
    return framed(REFUSED, msgpack.packb([ticket, message]))


def held(ticket, key, size, length):
    """A held frame: the value of `ticket` stays on the cluster under `key`."""
    return framed(HELD, msgpack.packb([ticket, key, size, length]))


def ended_with(header, value):
    """An ended frame from its header and returned value."""
    return framed(ENDED, struct.pack("<I", len(header)) + header + struct.pack("<I", len(value)) + value)


def attempt_ticket(frame):
    """The ticket of an attempt frame (the first field of its header)."""
    if len(frame) < 9 or frame[4] != ATTEMPT:
        return None
    (header_len,) = struct.unpack("<I", frame[5:9])
    header = msgpack.unpackb(frame[9 : 9 + header_len], raw=False, strict_map_key=False)
    return header[0]


def array_len(value):
    """The length of a MessagePack array, or None for anything else."""
    if not value:
        return None
    b = value[0]
    if 0x90 <= b <= 0x9F:
        return b & 0x0F
    if b == 0xDC and len(value) >= 3:
        return struct.unpack_from(">H", value, 1)[0]
    if b == 0xDD and len(value) >= 5:
        return struct.unpack_from(">I", value, 1)[0]
    return None


def array_header(n):
    """The MessagePack header of an array of n elements."""
    if n < 16:
        return bytes([0x90 | n])
    if n < 0x10000:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


def element_offsets(value):
    """Where each element of a MessagePack array starts, and where the last one ends."""
    unpacker = msgpack.Unpacker(max_buffer_size=max(len(value), 1024))
    unpacker.feed(value)
    n = unpacker.read_array_header()
    offsets = [unpacker.tell()]
    for _ in range(n):
        unpacker.skip()
        offsets.append(unpacker.tell())
    return offsets


def short_candidate(frame):
    """The task key of an attempt frame whose calls may count as short (it has no
    timeout: a body past its timeout stops its process), or None."""
    if len(frame) < 9 or frame[4] != ATTEMPT:
        return None
    (header_len,) = struct.unpack_from("<I", frame, 5)
    header = msgpack.unpackb(frame[9 : 9 + header_len], raw=False, strict_map_key=False)
    return header[1] if header[3] is None else None


def batch_done(batch, timed, seconds, last):
    """A batch-done frame: the coordinator's count of a batch's time and end."""
    return framed(BATCH_DONE, msgpack.packb([batch, timed, seconds, last]))


def split_frames(frames):
    """The attempt frames a batch carries, one after the other, as a list."""
    out = []
    at = 0
    while at < len(frames):
        (length,) = struct.unpack_from("<I", frames, at)
        out.append(frames[at : at + 4 + length])
        at += 4 + length
    return out


def could_not_run(worker, ticket, error):
    """The reply, as `TideflowWorker.call` gives it, for an attempt the worker could not
    run."""
    message = "the attempt could not be run on Dask worker %s: %s: %s" % (
        worker.address,
        type(error).__name__,
        error,
    )
    last = refused(ticket, message)
    return b"", last[:4], last[4:]


def report(worker, topic, key, prefix, head, body):
    """Sends an attempt's outcome to the bridge (an event on `topic`) and gives the Dask
    task's result: a returned value too large to travel with its outcome, else None."""
    if len(body) > 5 and body[0] == ENDED:
        (header_len,) = struct.unpack_from("<I", body, 1)
        if len(body) > 5 + header_len + 4 + INLINE:
            value = body[9 + header_len :]
            worker.log_event(topic, [key, prefix, body[5 : 5 + header_len], len(value), array_len(value)])
            return value
    worker.log_event(topic, [key, prefix + head + body, None, 0, None])
    return None


class TideflowWorker(WorkerPlugin):
    """Starts, on each Dask worker, one tideflow worker process, reached over a pipe.

    The process is started on the first attempt the Dask worker runs (never on the event
    loop), and again if it died; attempts to one process go one at a time.
    """

    idempotent = True

    def __init__(self, program, args, upload, hello):
        # Only what can be pickled: the plugin travels to every worker.
        self.program = program
        self.args = args
        self.upload = upload
        self.hello = hello

    def setup(self, worker):
        self.local_directory = worker.local_directory
        self.lock = threading.Lock()
        self.proc = None
        # Element offsets of the held lists this worker's attempts map over, by key and
        # path: each list is scanned once, not once per element.
        self.offsets = {}
        # The cluster-wide limits of tags, as Dask semaphores, by tag.
        self.semaphores = {}
        # How many of each task's last calls were short (up to 2), by task key.
        self.short = {}

    def attempt(self, frame, refs, keys, values, topic, ticket, key, limits):
        """Runs one attempt on this worker's tideflow process (see `tideflow_attempt`)."""
        worker = get_worker()
        try:
            if refs:
                frame = self.resolve(frame, refs, dict(zip(keys, values)))
            held = self.acquire(limits) if limits else ()
            try:
                prefix, head, body = self.call(frame)
            finally:
                for semaphore in held:
                    semaphore.release()
        except Exception as e:  # noqa: BLE001 - every failure is reported to the coordinator
            prefix, head, body = could_not_run(worker, ticket, e)
        return report(worker, topic, key, prefix, head, body)

    async def attempt_quick(self, frame, topic, ticket, key):
        """Runs one attempt that reads no held data and takes no tag's lease (see
        `tideflow_attempt_quick`): on the worker's event loop when its task's runs are
        short and the tideflow process is free, on the worker's threads otherwise."""
        worker = get_worker()
        try:
            task = short_candidate(frame)
            if task is not None and self.short.get(task, 0) >= 2 and self.lock.acquire(blocking=False):
                try:
                    prefix, head, body = self.call_locked(frame, task)
                finally:
                    self.lock.release()
            else:
                loop = asyncio.get_running_loop()
                prefix, head, body = await loop.run_in_executor(worker.executors["default"], self.call, frame, task)
        except Exception as e:  # noqa: BLE001 - every failure is reported to the coordinator
            prefix, head, body = could_not_run(worker, ticket, e)
        return report(worker, topic, key, prefix, head, body)

    async def batch(self, frames, children, keys, values, topic, key):
        """Runs a batch of attempts of one task (see `tideflow_batch`): on the worker's
        threads, or for a lone short attempt on its event loop (as `attempt_quick`)."""
        worker = get_worker()
        skip = ()
        if len(children) > 1:
            # A batch run again after its worker died skips the attempts whose outcomes
            # that worker recorded before it went.
            try:
                skip = await worker.scheduler.get_metadata(keys=[topic, "done", key], default=None) or ()
            except Exception:  # noqa: BLE001 - nothing recorded: every attempt runs
                skip = ()
        elif not children[0][2]:
            task = short_candidate(frames)
            if task is not None and self.short.get(task, 0) >= 2 and self.lock.acquire(blocking=False):
                try:
                    return self.run_batch(worker, frames, children, keys, values, topic, key, (), None, True)
                finally:
                    self.lock.release()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            worker.executors["default"],
            self.run_batch,
            worker,
            frames,
            children,
            keys,
            values,
            topic,
            key,
            set(skip),
            loop,
            False,
        )

    def run_batch(self, worker, frames, children, keys, values, topic, key, skip, loop, locked):
        """Runs the attempts of a batch one after the other, each as `attempt` runs one,
        and sends their outcomes as they come (at least every `FLUSH` seconds). Returns
        the values too large to travel with their outcomes, by position in the batch."""
        data = dict(zip(keys, values)) if keys else None
        frames = split_frames(frames)
        kept = {}
        done = list(skip)
        pending = [[], [], [], 0, 0.0]  # tickets, replies, held, timed, seconds
        last_flush = time.monotonic()
        lone = len(children) == 1
        for index, ((ticket, fetch, refs), frame) in enumerate(zip(children, frames)):
            if ticket in skip:
                continue
            elapsed = None
            try:
                if refs:
                    frame = self.resolve(frame, refs, data)
                task = short_candidate(frame) if lone and not refs else None
                if not locked:
                    self.lock.acquire()
                try:
                    if self.proc is None or self.proc.poll() is not None:
                        self.start()
                    started = time.perf_counter()
                    prefix, head, body = self.call_locked(frame, task)
                    elapsed = time.perf_counter() - started
                finally:
                    if not locked:
                        self.lock.release()
            except Exception as e:  # noqa: BLE001 - every failure is reported to the coordinator
                prefix, head, body = could_not_run(worker, ticket, e)
            if elapsed is not None and body[:1] == bytes([ENDED]):
                pending[3] += 1
                pending[4] += elapsed
            if len(body) > 5 and body[0] == ENDED and not fetch:
                (header_len,) = struct.unpack_from("<I", body, 1)
                if len(body) > 5 + header_len + 4 + INLINE:
                    value = body[9 + header_len :]
                    kept[index] = value
                    pending[2].append([ticket, index, prefix, body[5 : 5 + header_len], len(value), array_len(value)])
                    continue
            pending[0].append(ticket)
            pending[1].append(prefix + head + body)
            if index + 1 < len(children) and time.monotonic() - last_flush > FLUSH and loop is not None:
                # What the scheduler knows first: a worker that dies after this leaves
                # a record of these outcomes (the bridge answers any it did not get).
                done.extend(pending[0])
                try:
                    asyncio.run_coroutine_threadsafe(
                        worker.scheduler.set_metadata(keys=[topic, "done", key], value=done), loop
                    ).result(timeout=10)
                except Exception:  # noqa: BLE001 - without the record a run again repeats them
                    pass
                worker.log_event(topic, ["batch", key] + pending + [False])
                pending = [[], [], [], 0, 0.0]
                last_flush = time.monotonic()
        worker.log_event(topic, ["batch", key] + pending + [True])
        return kept or None

    def acquire(self, limits):
        """A lease of the semaphore of each limited tag (in one order, so that attempts
        with several tags cannot wait for each other): what to release after."""
        held = []
        try:
            for tag, limit in sorted(limits):
                semaphore = self.semaphores.get(tag)
                if semaphore is None:
                    semaphore = Semaphore(max_leases=limit, name="tideflow-tag-%s" % tag)
                    self.semaphores[tag] = semaphore
                semaphore.acquire()
                held.append(semaphore)
        except BaseException:
            for semaphore in held:
                semaphore.release()
            raise
        return held

    def element(self, key, path, value):
        """The bytes of the element at `path` of the held list `value` (key `key`)."""
        for depth, index in enumerate(path):
            where = (key, tuple(path[:depth]))
            offsets = self.offsets.get(where)
            if offsets is None:
                if len(self.offsets) > 256:
                    self.offsets.clear()
                offsets = self.offsets[where] = element_offsets(value)
            if index + 1 >= len(offsets):
                raise IndexError("element %d of held data %s, a list of %d" % (index, key, len(offsets) - 1))
            value = value[offsets[index] : offsets[index + 1]]
        return bytes(value)

    def piece(self, piece, data):
        """The bytes of one input piece (see the routing in the Rust `frame` module)."""
        kind = piece[0]
        if kind == 0:
            return piece[1]
        if kind == 1:
            key, path = piece[1], piece[2]
            value = data[key]
            return self.element(key, path, memoryview(value)) if path else bytes(value)
        parts = [self.piece(p, data) for p in piece[1]]
        return array_header(len(parts)) + b"".join(parts)

    def resolve(self, frame, refs, data):
        """The attempt frame with the inputs the cluster holds filled in."""
        (header_len,) = struct.unpack_from("<I", frame, 5)
        at = 9 + header_len
        (count,) = struct.unpack_from("<I", frame, at)
        at += 4
        inputs = []
        for _ in range(count):
            (n,) = struct.unpack_from("<I", frame, at)
            inputs.append(frame[at + 4 : at + 4 + n])
            at += 4 + n
        for index, piece in refs:
            inputs[index] = self.piece(piece, data)
        body = [bytes([ATTEMPT]), frame[5 : 9 + header_len], struct.pack("<I", count)]
        for value in inputs:
            body.append(struct.pack("<I", len(value)))
            body.append(value)
        body = b"".join(body)
        return struct.pack("<I", len(body)) + body

    def teardown(self, worker):
        proc = self.proc
        if proc is not None:
            try:
                proc.stdin.close()
                proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - a worker going away must not fail
                proc.kill()

    def path(self):
        if not self.upload:
            return self.program
        # `upload_file` writes the file without its exec bit: restore it.
        path = os.path.join(self.local_directory, os.path.basename(self.program))
        os.chmod(path, 0o755)
        return path

    def start(self):
        env = dict(os.environ)
        env["TIDEFLOW_WORKER"] = "1"
        # Values of megabytes come and go with every attempt: glibc keeps their memory
        # for the next one instead of mapping fresh pages each time (unless set already).
        env.setdefault("MALLOC_MMAP_THRESHOLD_", str(32 << 20))
        env.setdefault("MALLOC_TRIM_THRESHOLD_", str(512 << 20))
        proc = subprocess.Popen(
            [self.path()] + list(self.args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        seen = b""
        while not seen.endswith(PROTOCOL_MAGIC):
            byte = proc.stdout.read(1)
            if not byte:
                raise RuntimeError(
                    "the tideflow worker process did not start as a worker (it printed %r)" % seen[-200:]
                )
            seen += byte
            if len(seen) > 65536:
                raise RuntimeError("the tideflow worker process printed 64 KiB without greeting")
        if read_frame(proc.stdout) is None:
            raise RuntimeError("the tideflow worker process closed before it said hello")
        proc.stdin.write(self.hello)
        proc.stdin.flush()
        self.proc = proc

    def call(self, frame, task=None):
        """Sends one attempt frame to this worker's tideflow process. Its reply: the frames
        before the last (log lines), and the last one (the end) as its length prefix and
        its body, apart, so that a value of megabytes is not copied to join them. `task`:
        the attempt's task, if its calls may count as short (see `short_candidate`)."""
        with self.lock:
            return self.call_locked(frame, task)

    def call_locked(self, frame, task=None):
        """`call`, with the lock held by the caller."""
        if task is None:
            return self.exchange(frame)
        started = time.perf_counter()
        reply = self.exchange(frame)
        runs = self.short.get(task, 0)
        self.short[task] = min(runs + 1, 2) if time.perf_counter() - started <= SHORT else 0
        return reply

    def exchange(self, frame):
        """One attempt's round trip to the tideflow process, started (again) if needed."""
        for first in (True, False):
            if self.proc is None or self.proc.poll() is not None:
                self.start()
            proc = self.proc
            prefix = b""
            try:
                proc.stdin.write(frame)
                proc.stdin.flush()
                # The attempt's log lines (if any), then its end.
                while True:
                    parts = read_parts(proc.stdout)
                    if parts is None or parts[1][0] in (ENDED, REFUSED):
                        break
                    prefix += parts[0] + parts[1]
            except (BrokenPipeError, OSError):
                parts = None
            if parts is not None:
                return prefix, parts[0], parts[1]
            try:
                code = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = proc.poll()
            self.proc = None
            if first and code == STOPPED_AFTER_TIMEOUT:
                # The process was stopping for an earlier attempt that ran past its
                # timeout, not for this one: this one goes to a new process.
                continue
            message = "worker process died (pid %d, exit status %s) while it ran the attempt" % (
                proc.pid,
                code,
            )
            last = refused(attempt_ticket(frame), message)
            return prefix, last[:4], last[4:]


def tideflow_attempt(frame, refs, keys, values, topic, ticket, key, limits):
    """A Dask task: runs one attempt on this worker's tideflow process.

    `values` are the held results the attempt reads (Dask passes the data of the futures
    the bridge gave), named by `keys`. The bridge's worker plugin is registered under
    `topic`, and the outcome goes to the bridge as an event on `topic`: `[key, frames,
    header, size, length]`, where `header` is None when `frames` is the whole reply;
    otherwise `frames` are the log lines and the returned value is the task's result,
    which stays on this worker (`header` is its ended header, `size` and `length` its size
    and, for a list, length). The attempt holds a lease of the semaphore of each limited
    tag it carries (`limits`) while it runs.

    Dask pickles this function with every task it sends a worker, by value (the bridge is
    a script), with every global it names: so it names one, imported from `distributed`
    (pickled by reference), and the work is done by the plugin, which reached the worker
    once, when it was registered.
    """
    return get_worker().plugins[topic].attempt(frame, refs, keys, values, topic, ticket, key, limits)


async def tideflow_batch(frames, children, keys, values, topic, key):
    """A Dask task: runs a batch of attempts of one task on this worker's tideflow
    process, one after the other, each with its own outcome (events on `topic`:
    `["batch", key, tickets, replies, held, timed, seconds, last]`). `children` are the
    attempts' `[ticket, fetch, refs]`, `frames` their attempt frames one after the other,
    `values` the held results they read (named by `keys`). The task's result: the values
    too large to travel with their outcomes, by position in the batch (each reached with
    a `getitem` task of its own), or None.
    """
    return await get_worker().plugins[topic].batch(frames, children, keys, values, topic, key)


async def tideflow_attempt_quick(frame, topic, ticket, key):
    """A Dask task: `tideflow_attempt` for an attempt that reads no held data and takes no
    tag's lease. A coroutine, so Dask runs it on the worker's event loop: the attempt of a
    task whose runs are short goes to the tideflow process from there, without the hand
    over to a thread and back, which on a busy worker costs more than such a run.
    """
    return await get_worker().plugins[topic].attempt_quick(frame, topic, ticket, key)


class Batch:
    """A batch the bridge submitted, until every attempt of it is answered."""

    __slots__ = ("id", "key", "children", "frames", "refs", "future", "answered", "runs", "finished_at")

    def __init__(self, id, key, children, frames, refs):
        self.id = id
        self.key = key
        # The attempts, and their frames and routing (to send again what a run of the
        # batch did not answer).
        self.children = children
        self.frames = frames
        self.refs = refs
        self.future = None
        self.answered = 0
        self.runs = 0
        self.finished_at = None


class Attempt:
    """An attempt the bridge submitted, until its data is released."""

    __slots__ = ("ticket", "key", "fetch", "future", "answered", "held", "finished_at")

    def __init__(self, ticket, key, fetch):
        self.ticket = ticket
        self.key = key
        self.fetch = fetch
        self.future = None
        self.answered = False
        self.held = False
        self.finished_at = None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scheduler")
    parser.add_argument("--local", type=int)
    parser.add_argument("--program", required=True)
    parser.add_argument("--upload", action="store_true")
    parser.add_argument("--hello", required=True, help="the coordinator's hello frame, in hex")
    parser.add_argument("--local-directory")
    parser.add_argument("worker_args", nargs="*")
    opts = parser.parse_args()

    # Frames go to the real standard output; anything printed goes to standard error.
    global OUT
    out = OUT = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    stdin = sys.stdin.buffer

    # This bridge's events, and the prefix of its Dask keys: unique, so that several
    # coordinators can share one cluster.
    topic = "tideflow-%s" % uuid.uuid4().hex[:16]
    # Outcomes (events), data fetched back, releases: handled in order by one thread.
    inbox = queue.Queue()
    try:
        if opts.local is not None:
            cluster = LocalCluster(
                n_workers=opts.local,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                local_directory=opts.local_directory,
            )
            client = Client(cluster)
        else:
            cluster = None
            client = Client(opts.scheduler, timeout="10s")
        if opts.upload:
            client.upload_file(opts.program, load=False)
        plugin = TideflowWorker(opts.program, opts.worker_args, opts.upload, bytes.fromhex(opts.hello))
        # Under this bridge's own name: coordinators of other programs (other builds) may
        # share the cluster, each with worker processes of its own program.
        client.register_plugin(plugin, name=topic)
        client.subscribe_topic(topic, lambda event: inbox.put(("event", event[1])))
        # The client sends to the scheduler at most once per 10 ms (Dask's batching): a
        # chain, which submits one attempt per outcome, would wait for that at every step.
        try:
            client.scheduler_comm.interval = 0.001
        except AttributeError:
            pass
        workers = len(client.scheduler_info().get("workers", {}))
        address = client.scheduler.address
    except Exception as e:  # noqa: BLE001 - every failure is reported to the coordinator
        fail("cannot reach the Dask cluster: %s: %s" % (type(e).__name__, e))

    out.write((json.dumps({"ready": True, "scheduler": address, "workers": workers}) + "\n").encode())
    out.flush()

    write_lock = threading.Lock()
    # Attempts by Dask key, from their submission until they are answered and, for a
    # held result, until the coordinator releases it (dropping the future lets Dask
    # forget the data).
    live = {}
    # Held results the coordinator released, by key, with their tickets (the most recent
    # 100,000): Dask computes one again when a worker that had it is lost while a task
    # submitted earlier still waits for it.
    released = {}
    # Batches by the Dask key of their current run, until every attempt of them is
    # answered.
    batches = {}
    # How many attempts are not answered yet, and whether the coordinator is done.
    settled = threading.Condition()
    outstanding = [0]
    closing = [False]
    stopping = threading.Event()
    submissions = queue.Queue()
    fetcher = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tideflow-fetch")

    def reply(frame):
        with write_lock:
            out.write(frame)
            out.flush()

    def answer(attempt, frames):
        attempt.answered = True
        reply(frames)
        with settled:
            outstanding[0] -= 1
            settled.notify_all()

    def scheduler_gone():
        return "the Dask scheduler at %s went away (the client is %s)" % (address, client.status)

    def watch_scheduler():
        # A scheduler that stays unreachable ends the bridge, and with it every attempt
        # of the coordinator, instead of leaving them waiting.
        lost_since = None
        while True:
            time.sleep(0.5)
            if client.status == "running":
                lost_since = None
                continue
            if client.status in ("closing", "closed") and stopping.is_set():
                return
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > 3:
                try:
                    reply(refused(None, scheduler_gone()))
                except OSError:
                    pass  # the coordinator is gone too: nobody to tell
                os._exit(1)

    def fetch(attempt, frames, header):
        # The coordinator needs this value itself: gathered from its worker.
        try:
            while attempt.future is None:  # the submitter is about to set it
                time.sleep(0.001)
            value = attempt.future.result()
            inbox.put(("fetched", attempt, frames + ended_with(header, bytes(value))))
        except Exception as e:  # noqa: BLE001 - every failure is reported to the coordinator
            message = "the result could not be fetched from the Dask cluster: %s: %s" % (type(e).__name__, e)
            inbox.put(("fetched", attempt, frames + refused(attempt.ticket, message)))

    def outcome(key, frames, header, size, length):
        attempt = live.get(key)
        if attempt is None:
            if key in released:
                reply(framed(RECOMPUTED, msgpack.packb(released[key])))
            return
        if attempt.answered:
            # Dask ran it again: its result was lost with a worker while still held.
            if attempt.held:
                reply(framed(RECOMPUTED, msgpack.packb(attempt.ticket)))
            return
        if header is None:
            live.pop(key, None)
            answer(attempt, frames)
        elif attempt.fetch:
            attempt.answered = True
            fetcher.submit(fetch, attempt, frames, header)
        else:
            attempt.held = True
            answer(attempt, frames + held(attempt.ticket, key, size, length))

    def settle(n):
        with settled:
            outstanding[0] -= n
            settled.notify_all()

    def batch_outcome(bkey, tickets, replies, kept, timed, seconds, last):
        # Outcomes of attempts of a batch: each answered once. An outcome that comes
        # again is of a run of the batch again (its worker died, or a value it kept was
        # lost): ignored, or for a held value, a recomputation.
        batch = batches.get(bkey)
        out = []
        answered = 0
        for ticket, data in zip(tickets, replies):
            attempt = live.get("%s-%d" % (topic, ticket))
            if batch is None or attempt is None or attempt.answered:
                continue
            live.pop(attempt.key, None)
            attempt.answered = True
            out.append(data)
            answered += 1
        for ticket, index, logs, header, size, length in kept:
            key = "%s-%d" % (topic, ticket)
            attempt = live.get(key)
            if attempt is None or attempt.answered or batch is None:
                if attempt is None and key in released:
                    out.append(framed(RECOMPUTED, msgpack.packb(released[key])))
                elif attempt is not None and attempt.held:
                    out.append(framed(RECOMPUTED, msgpack.packb(attempt.ticket)))
                continue
            attempt.answered = True
            answered += 1
            try:
                # The value stays where the batch ran, under the attempt's own key.
                attempt.future = client.submit(operator.getitem, batch.future, index, key=key, pure=False)
            except Exception as e:  # noqa: BLE001 - every failure is reported to the coordinator
                live.pop(key, None)
                out.append(logs + refused(ticket, "the result could not be kept on the Dask cluster: %s" % e))
                continue
            attempt.held = True
            out.append(logs + held(ticket, key, size, length))
        if batch is None:
            # A batch over (or sent again): only recomputations to tell.
            if out:
                reply(b"".join(out))
            return
        batch.answered += answered
        over = batch.answered >= len(batch.children)
        if over:
            batches.pop(bkey, None)
            batch.future = None
        reply(batch_done(batch.id, timed, seconds, over) + b"".join(out))
        settle(answered)
        if last and not over:
            # The run recorded outcomes this bridge never got (its worker died between
            # the two): those attempts go again.
            batches.pop(bkey, None)
            dispatch(batch, [i for i, c in enumerate(batch.children) if not c.answered])

    def refuse_batch(batch, message):
        # Every attempt of the batch not answered yet is refused.
        if batches.get(batch.key) is not batch:
            return
        batches.pop(batch.key, None)
        out = [batch_done(batch.id, 0, 0.0, True)]
        n = 0
        for child in batch.children:
            if child.answered:
                continue
            live.pop(child.key, None)
            child.answered = True
            out.append(refused(child.ticket, message))
            n += 1
        batch.future = None
        reply(b"".join(out))
        settle(n)

    def dispatch(batch, indices):
        # Sends the attempts of a batch at `indices` (all of them, or what a run of it
        # left) as one Dask task.
        frames = batch.frames
        routing = batch.refs
        if len(indices) < len(batch.children):
            split = split_frames(frames)
            frames = b"".join(split[i] for i in indices)
            routing = [routing[i] for i in indices]
            batch.children = [batch.children[i] for i in indices]
            batch.frames = frames
            batch.refs = routing
            batch.answered = 0
        batch.runs += 1
        batch.key = "%s-b%d" % (topic, batch.id) if batch.runs == 1 else "%s-b%d-%d" % (topic, batch.id, batch.runs)
        batch.future = None
        batch.finished_at = None
        batches[batch.key] = batch
        keys = []
        collect_keys([piece for child in routing for _, piece in child[2]], keys)
        missing = [k for k in keys if k not in live]
        if missing:
            inbox.put(("refuse-batch", batch, "its input data %s is no longer on the Dask cluster" % missing))
            return
        values = [live[k].future for k in keys]
        submissions.put((batch, (frames, routing, keys, values, topic, batch.key)))

    def failure(holder, now, of):
        # Why the Dask task of `holder` (an attempt or a batch, `of` saying which) ended
        # without an outcome, or None while it may still give one.
        future = holder.future
        status = future.status
        if status == "cancelled":
            if client.status != "running":
                return scheduler_gone()
            return "the Dask task%s was cancelled on the Dask cluster" % of
        if status == "error":
            try:
                error = future.exception(timeout=1)
            except Exception as e:  # noqa: BLE001
                error = e
            return "the Dask task%s failed: %s: %s" % (of, type(error).__name__, error)
        if status == "finished":
            holder.finished_at = holder.finished_at or now
            if now - holder.finished_at > 30:
                return "the Dask task%s finished but its outcome never arrived" % of
        return None

    def check_failed():
        # Dask tasks that ended without running their attempt (a worker lost too often,
        # a dependency lost for good, the scheduler gone) have no event: answer them.
        now = time.monotonic()
        for attempt in list(live.values()):
            if attempt.answered or attempt.future is None:
                continue
            message = failure(attempt, now, "")
            if message is not None:
                live.pop(attempt.key, None)
                answer(attempt, refused(attempt.ticket, message))
        for batch in list(batches.values()):
            if batch.future is None:
                continue
            message = failure(batch, now, " of its batch")
            if message is not None:
                # After the outcomes already on their way.
                inbox.put(("refuse-batch", batch, message))

    def process(item):
        # A function of its own, so that nothing it read stays referenced: a future
        # referenced here would keep its data on the cluster.
        kind = item[0]
        if kind == "event":
            if item[1][0] == "batch":
                batch_outcome(*item[1][1:])
            else:
                outcome(*item[1])
        elif kind == "refuse-batch":
            refuse_batch(item[1], item[2])
        elif kind == "fetched":
            live.pop(item[1].key, None)
            answer(item[1], item[2])
        elif kind == "release":
            for key in item[1]:
                attempt = live.pop(key, None)
                if attempt is not None and attempt.held:
                    released[key] = attempt.ticket
                    if len(released) > 100000:
                        released.pop(next(iter(released)))
        elif kind == "dispatch":
            dispatch(item[1], range(len(item[1].children)))
        elif kind == "refuse":
            live.pop(item[1].key, None)
            answer(item[1], refused(item[1].ticket, item[2]))

    def handle():
        last_check = time.monotonic()
        while True:
            try:
                process(inbox.get(timeout=0.5))
            except queue.Empty:
                pass
            if time.monotonic() - last_check > 0.5:
                last_check = time.monotonic()
                check_failed()
                with settled:
                    if closing[0] and outstanding[0] == 0:
                        return

    def send(batch):
        # One message to the scheduler for the whole batch (two, when some of its
        # attempts read held data or take a tag's lease). A function of its own, as
        # `process`: no future may stay referenced here.
        many = [(b, args) for b, args in batch if isinstance(b, Batch)]
        if many:
            map_batch(tideflow_batch, many)
            batch = [(a, args) for a, args in batch if not isinstance(a, Batch)]
        quick = [(a, (args[0], args[4], args[5], args[6])) for a, args in batch if not args[1] and not args[7]]
        if len(quick) < len(batch):
            map_batch(tideflow_attempt, [(a, args) for a, args in batch if args[1] or args[7]])
        map_batch(tideflow_attempt_quick, quick)

    def map_batch(function, batch):
        if not batch:
            return
        columns = list(zip(*[args for _, args in batch]))
        try:
            futures = client.map(
                function,
                *columns,
                key=[attempt.key for attempt, _ in batch],
                pure=False,
                retries=0,
            )
        except Exception as e:  # noqa: BLE001 - every failure is reported to the coordinator
            for attempt, _ in batch:
                message = "the attempt could not be sent to Dask: %s: %s" % (type(e).__name__, e)
                inbox.put(("refuse-batch" if isinstance(attempt, Batch) else "refuse", attempt, message))
            return
        for (attempt, _), future in zip(batch, futures):
            attempt.future = future

    def submit():
        # Attempts go to Dask in batches: everything the coordinator sent by now.
        while True:
            batch = [submissions.get()]
            # While a burst is still arriving (a map expanding), wait for the rest of it:
            # the scheduler's cost is per message, not per task. A lone attempt (a chain's
            # next step) goes at once.
            more = True
            while more and batch[-1] is not None:
                more = False
                while True:
                    try:
                        batch.append(submissions.get_nowait())
                        more = True
                    except queue.Empty:
                        break
                if more:
                    time.sleep(0.0005)
            last = batch[-1] is None
            send([b for b in batch if b is not None])
            del batch
            if last:
                return

    threading.Thread(target=watch_scheduler, daemon=True).start()
    handler = threading.Thread(target=handle, daemon=True)
    handler.start()
    submitter = threading.Thread(target=submit, daemon=True)
    submitter.start()

    def accept(frame):
        # A function of its own, as `process`.
        kind = frame[4]
        if kind == RELEASE:
            inbox.put(("release", msgpack.unpackb(frame[5:], raw=False)))
            return
        if kind == BATCH:
            (routing_len,) = struct.unpack_from("<I", frame, 5)
            number, routing = msgpack.unpackb(frame[9 : 9 + routing_len], raw=False)
            children = []
            for ticket, fetch_back, _ in routing:
                attempt = Attempt(ticket, "%s-%d" % (topic, ticket), fetch_back)
                live[attempt.key] = attempt
                children.append(attempt)
            with settled:
                outstanding[0] += len(children)
            inbox.put(("dispatch", Batch(number, None, children, frame[9 + routing_len :], routing)))
            return
        if kind != ROUTED:
            reply(refused(None, "the bridge was sent a frame of kind %d: the coordinator and the bridge differ" % kind))
            return
        (routing_len,) = struct.unpack_from("<I", frame, 5)
        ticket, fetch_back, refs, limits = msgpack.unpackb(frame[9 : 9 + routing_len], raw=False)
        inner = frame[9 + routing_len :]
        key = "%s-%d" % (topic, ticket)
        attempt = Attempt(ticket, key, fetch_back)
        with settled:
            outstanding[0] += 1
        live[key] = attempt
        keys = []
        collect_keys([p for _, p in refs], keys)
        missing = [k for k in keys if k not in live]
        if missing:
            inbox.put(("refuse", attempt, "its input data %s is no longer on the Dask cluster" % missing))
            return
        values = [live[k].future for k in keys]
        submissions.put((attempt, (inner, refs, keys, values, topic, ticket, key, limits)))

    while True:
        frame = read_frame(stdin)
        if frame is None:
            break
        accept(frame)
    del frame

    # The coordinator closed its end: answer what runs, then stop.
    submissions.put(None)
    submitter.join()
    with settled:
        closing[0] = True
        settled.notify_all()
    handler.join()
    stopping.set()
    fetcher.shutdown(wait=False)
    try:
        # What the batches recorded with the scheduler goes with the bridge.
        client.set_metadata([topic], None)
    except Exception:  # noqa: BLE001 - a cluster going away must not fail the close
        pass
    try:
        # The workers stop this bridge's worker processes (a shared cluster outlives it).
        client.unregister_worker_plugin(topic)
    except Exception:  # noqa: BLE001 - a cluster going away must not fail the close
        pass
    client.close()
    if cluster is not None:
        cluster.close()


def collect_keys(pieces, out):
    """The Dask keys the pieces refer to, each once, in order."""
    for piece in pieces:
        if piece[0] == 1:
            if piece[1] not in out:
                out.append(piece[1])
        elif piece[0] == 2:
            collect_keys(piece[1], out)


if __name__ == "__main__":
    main()
