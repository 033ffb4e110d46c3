"""One writer per run folder, the TypeScript side's protocol (src/io/lock.ts): `RUN/run.lock` holds
the writer's PID, host, command, start time and a token. It is written in full under a temporary
name and hard-linked to its name (which fails if it exists); a lock whose process is gone (same host,
PID not alive) is taken over with a message; a live one, or one from another host, is refused."""
import json
import os
import secrets
import socket
import sys
from datetime import datetime, timezone

LOCK_FILE = "run.lock"


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            h = json.load(f)
        return h if isinstance(h, dict) and isinstance(h.get("pid"), int) and isinstance(h.get("host"), str) else None
    except (OSError, ValueError):
        return None


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False


def _describe(h):
    return f"PID {h['pid']} on {h['host']} ({h.get('command')}, since {h.get('since')})"


class RunLock:
    def __init__(self, run_dir, command):
        os.makedirs(run_dir, exist_ok=True)
        self.path = os.path.join(run_dir, LOCK_FILE)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "since": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
              "token": secrets.token_hex(8)}
        self.token = me["token"]
        tmp = f"{self.path}.tmp-{secrets.token_hex(4)}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(me, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            for attempt in range(5):
                try:
                    os.link(tmp, self.path)
                    break
                except FileExistsError:
                    if attempt == 4:
                        raise
                h = _read(self.path)
                if h is None:
                    raise RuntimeError(f"{self.path} exists but is not a lock this program wrote; delete it if no run uses {run_dir}")
                if h["host"] != me["host"] or _alive(h["pid"]):
                    extra = f" (if that process is gone, delete {self.path})" if h["host"] != me["host"] else ""
                    raise RuntimeError(f"{run_dir} is in use by {_describe(h)}; wait for it to finish, or use another folder{extra}")
                self._take_over(h)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def _take_over(self, stale):
        aside = f"{self.path}.tmp-{secrets.token_hex(4)}"
        try:
            os.replace(self.path, aside)
        except OSError:
            return
        moved = _read(aside)
        if (moved or {}).get("token") != stale.get("token"):
            try:
                os.link(aside, self.path)  # a live lock we must not have taken
            except OSError:
                pass
        else:
            print(f"taking over the lock {self.path}: its holder, {_describe(stale)}, is no longer running", file=sys.stderr)
        os.remove(aside)

    def release(self):
        if (_read(self.path) or {}).get("token") == self.token:
            os.remove(self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
