"""The bridge between a tideflow coordinator and a Dask cluster.

The coordinator (a Rust program) starts this script with Python, writes attempt frames on
its standard input and reads reply frames on its standard output. The script connects to
a Dask scheduler (or starts a local cluster), has every Dask worker start one long-lived
tideflow worker process (the coordinator's own program in worker mode), and runs each
attempt as a Dask task on a worker, which hands the frame to its tideflow worker process
over a pipe and returns the reply.

Frames are a little-endian u32 length, then that many bytes; this script reads only the
attempt's ticket (for errors) and passes everything else through.

Shipped inside the `flow-dask` crate; not meant to be run by hand.
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import threading
import time

PROTOCOL_MAGIC = b"TIDEFLOW-WORKER\n"
ATTEMPT = 2
ENDED = 3
REFUSED = 4


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
    from distributed import Client, LocalCluster, as_completed, get_worker
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


def read_frame(stream):
    """One frame (length prefix included), or None at the end of the stream."""
    head = read_exact(stream, 4)
    if head is None:
        return None
    (length,) = struct.unpack("<I", head)
    body = read_exact(stream, length)
    if body is None:
        return None
    return head + body


def refused(ticket, message):
    """A refused frame, as the Rust side reads it."""
    body = bytes([REFUSED]) + msgpack.packb([ticket, message])
    return struct.pack("<I", len(body)) + body


def attempt_ticket(frame):
    """The ticket of an attempt frame (the first field of its header)."""
    if len(frame) < 9 or frame[4] != ATTEMPT:
        return None
    (header_len,) = struct.unpack("<I", frame[5:9])
    header = msgpack.unpackb(frame[9 : 9 + header_len], raw=False, strict_map_key=False)
    return header[0]


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

    def call(self, frame):
        """Sends one attempt frame to this worker's tideflow process; its reply frame."""
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.start()
            proc = self.proc
            try:
                proc.stdin.write(frame)
                proc.stdin.flush()
                # The attempt's log lines (if any), then its end.
                reply = b""
                while True:
                    part = read_frame(proc.stdout)
                    if part is None:
                        reply = None
                        break
                    reply += part
                    if part[4] in (ENDED, REFUSED):
                        break
            except (BrokenPipeError, OSError):
                reply = None
            if reply is None:
                code = proc.poll()
                self.proc = None
                return refused(
                    attempt_ticket(frame),
                    "worker process died (pid %d, exit status %s) while it ran the attempt"
                    % (proc.pid, code),
                )
            return reply


def tideflow_attempt(frame):
    """A Dask task: runs one attempt frame on this worker's tideflow process."""
    return get_worker().plugins["tideflow"].call(frame)


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
        client.register_plugin(plugin, name="tideflow")
        workers = len(client.scheduler_info().get("workers", {}))
        address = client.scheduler.address
    except Exception as e:  # noqa: BLE001 - every failure is reported to the coordinator
        fail("cannot reach the Dask cluster: %s: %s" % (type(e).__name__, e))

    out.write((json.dumps({"ready": True, "scheduler": address, "workers": workers}) + "\n").encode())
    out.flush()

    write_lock = threading.Lock()
    settled = threading.Condition()
    # Attempts submitted and not answered yet, and whether the coordinator is done.
    outstanding = [0]
    closing = [False]
    # Every attempt's future, until it is answered (Dask forgets a task whose future is
    # dropped), and its ticket.
    live = {}
    done = as_completed()
    stopping = threading.Event()

    def reply(frame):
        with write_lock:
            out.write(frame)
            out.flush()

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
                reply(refused(None, scheduler_gone()))
                os._exit(1)

    def answer(future, result):
        ticket = live.pop(future.key, (None, None))[1]
        try:
            if future.status == "finished":
                reply(result if result is not None else future.result())
            elif future.status == "cancelled":
                if client.status != "running":
                    reply(refused(ticket, scheduler_gone()))
                else:
                    reply(refused(ticket, "the attempt was cancelled on the Dask cluster"))
            else:
                error = future.exception()
                reply(refused(ticket, "the Dask task failed: %s: %s" % (type(error).__name__, error)))
        except Exception as e:  # noqa: BLE001 - every failure is reported to the coordinator
            reply(refused(ticket, "the Dask task failed: %s: %s" % (type(e).__name__, e)))

    def consume():
        # Attempts that ended are answered in batches: one gather for all that are ready.
        while True:
            with settled:
                settled.wait_for(lambda: outstanding[0] > 0 or closing[0])
                if outstanding[0] == 0:
                    return
            try:
                batch = done.next_batch(block=True)
            except StopIteration:
                time.sleep(0.001)
                continue
            finished = [f for f in batch if f.status == "finished"]
            results = {}
            if finished:
                try:
                    results = dict(zip((f.key for f in finished), client.gather(finished)))
                except Exception:  # noqa: BLE001 - answered one by one instead
                    results = {}
            for future in batch:
                answer(future, results.get(future.key))
            with settled:
                outstanding[0] -= len(batch)
                settled.notify_all()

    threading.Thread(target=watch_scheduler, daemon=True).start()
    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()

    counter = 0
    while True:
        frame = read_frame(stdin)
        if frame is None:
            break
        ticket = attempt_ticket(frame)
        counter += 1
        future = client.submit(
            tideflow_attempt,
            frame,
            key="tideflow-%s-%d" % (ticket, counter),
            pure=False,
            retries=0,
        )
        live[future.key] = (future, ticket)
        with settled:
            outstanding[0] += 1
            settled.notify_all()
        done.add(future)

    # The coordinator closed its end: answer what runs, then stop.
    with settled:
        closing[0] = True
        settled.notify_all()
    consumer.join()
    stopping.set()
    client.close()
    if cluster is not None:
        cluster.close()


if __name__ == "__main__":
    main()
