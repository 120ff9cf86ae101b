"""compose/test-ha-cluster.sh, the users' HA check, run in its LOCAL mode on loopback: one
leader by the exact `cloudless_coordinator_is_leader 1` line, failover, rejoin; and its agent
phase: three agents enrolled and heartbeating through the failover, a 3-replica workload
running on them without a restart, the agents' logs showing enrollment and heartbeats."""
import os
import random
import socket
import subprocess
import tempfile

from harness import AGENT_BIN, BIN, run, scaled

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "compose", "test-ha-cluster.sh")


def free_block(n):
    """n consecutive ports that are all free right now."""
    for _ in range(200):
        base = random.randint(20000, 60000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no block of %d free ports" % n)


def test_ha_script_local_mode(make):
    with tempfile.TemporaryDirectory(prefix="cloudless-ha-") as data:
        env = dict(os.environ, LOCAL="1", BIN=os.path.abspath(BIN),
                   AGENT_BIN=os.path.abspath(AGENT_BIN), DATA=data,
                   BASE_PORT=str(free_block(12)))
        p = subprocess.run(["bash", SCRIPT], env=env, capture_output=True, text=True,
                           timeout=scaled(120))
        if p.returncode != 0:
            logs = ""
            for name in sorted(os.listdir(data)):
                if name.endswith(".log"):
                    with open(os.path.join(data, name), errors="replace") as f:
                        logs += "--- %s (last 40 lines)\n%s" % (
                            name, "".join(f.readlines()[-40:]))
            raise AssertionError(p.stdout + p.stderr + logs)
        assert "PASS: one leader, failover and rejoin work" in p.stdout, p.stdout
        assert "PASS: agents enrolled and heartbeating through the failover, replicas running" \
            in p.stdout, p.stdout
        for agent in ("agent-1", "agent-2", "agent-3"):
            with open(os.path.join(data, agent + ".log")) as f:
                log = f.read()
            assert "agent enrolled id=%s coordinator=" % agent in log, log
            assert "heartbeat ok" in log, log


if __name__ == "__main__":
    run([test_ha_script_local_mode])
