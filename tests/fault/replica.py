"""The replica process of the domain fault tests: what their workloads run as `command`.

    python3 replica.py LOG

It appends one JSON line to LOG when it starts and one when it is told to stop (SIGTERM or
SIGINT, which the agent sends first), each with what the agent gave it in its environment:

    {"ev": "start", "time": ns, "replica": "default/w1/0", "workload": "default/w1",
     "slot": 0, "epoch": 3, "agent": "a2", "pid": 4242}
    {"ev": "stop", ...the same fields..., "signal": 15}

time is CLOCK_MONOTONIC (time.monotonic_ns), the same clock in every process of the machine,
so the lines of all replicas, agents and the harness share one timeline. Each line is one
write(2) on an O_APPEND descriptor, so concurrent writers never interleave. A copy that is
SIGKILLed writes nothing: the harness records those kills itself ("killed" lines, see
domain_checker.py), and the agent's process groups tell it exactly which pids they were."""
import json
import os
import signal
import sys
import time


def main():
    log = sys.argv[1]
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    rid = os.environ.get("CLOUDLESS_REPLICA_ID", "")
    base = {"replica": rid, "workload": os.environ.get("CLOUDLESS_WORKLOAD", ""),
            "slot": int(rid.rsplit("/", 1)[1]) if "/" in rid else -1,
            "epoch": int(os.environ.get("CLOUDLESS_EPOCH", "0")),
            "agent": os.environ.get("CLOUDLESS_AGENT_ID", ""), "pid": os.getpid()}

    def write(ev, **extra):
        line = dict(base, ev=ev, time=time.monotonic_ns(), **extra)
        os.write(fd, (json.dumps(line, sort_keys=True) + "\n").encode())

    def on_signal(signum, _frame):
        write("stop", signal=signum)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    write("start")
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
