"""``python -m backbeat.simulator``: the same command as ``backbeat sim``."""

from .cli import sim

if __name__ == "__main__":
    sim(prog_name="python -m backbeat.simulator")
