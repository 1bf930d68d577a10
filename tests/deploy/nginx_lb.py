"""nginx for the deploy tests: install it if missing, render the project's template, read its log.

The template (``docker/nginx.conf.template``) is the http-level part of nginx's configuration, as the
official nginx image includes it from ``/etc/nginx/conf.d``; :func:`write_main_conf` wraps it in a
main configuration that keeps every path (pid, logs, temporary files) in the test's own folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "docker" / "nginx.conf.template"
PLACEHOLDERS = ("NGINX_LISTEN", "NGINX_UPSTREAM_SERVERS", "INTERLEAVE_MAX_REQUEST_BYTES")
"""Every ``${...}`` of the template; the test renders exactly these (as the nginx image would)."""
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def ensure_nginx() -> tuple[str, str]:
    """Paths of ``nginx`` and ``envsubst``, installing Debian's ``nginx`` and ``gettext-base`` if missing.

    The install runs ``apt-get`` (root only) with ``RUNLEVEL=1`` so the package's init script does
    not start a system nginx on port 80.

    Raises:
        RuntimeError: a program is missing and cannot be installed (not root, or apt-get failed).
    """
    nginx, envsubst = _which("nginx"), _which("envsubst")
    if nginx and envsubst:
        return nginx, envsubst
    if os.geteuid() != 0:
        raise RuntimeError("nginx / envsubst missing and not root: apt-get install nginx gettext-base")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", RUNLEVEL="1")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "nginx", "gettext-base"]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:  # a machine whose package lists were never fetched
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    nginx, envsubst = _which("nginx"), _which("envsubst")
    if done.returncode != 0 or not nginx or not envsubst:
        raise RuntimeError(
            f"installing nginx failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return nginx, envsubst


def render_template(envsubst: str, values: dict[str, str], template: Path = TEMPLATE) -> str:
    """The template with its placeholders replaced by ``envsubst``, as the nginx image does it.

    Raises:
        AssertionError: ``values`` does not name every placeholder, or one is left in the output.
    """
    assert set(values) == set(PLACEHOLDERS), sorted(values)
    text = template.read_text()
    assert set(_PLACEHOLDER.findall(text)) == set(PLACEHOLDERS), sorted(set(_PLACEHOLDER.findall(text)))
    shell_format = " ".join(f"${{{name}}}" for name in PLACEHOLDERS)
    out = subprocess.run(
        [envsubst, shell_format],
        input=text,
        env=dict(os.environ, **values),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert not _PLACEHOLDER.search(out), _PLACEHOLDER.findall(out)
    return out


def write_main_conf(folder: Path, rendered: str) -> Path:
    """Write the rendered template and a main ``nginx.conf`` around it into ``folder``; returns the
    main file. As root the workers run as root too (the folder is the test's, mode 0700)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "interleave.conf").write_text(rendered)
    temp = {k: folder / k for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = folder / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes 1;\n"
        f"pid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log warn;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        + "".join(f"    {k}_temp_path {v};\n" for k, v in temp.items())
        + f"    include {folder}/interleave.conf;\n"
        "}\n"
    )
    return conf


def nginx_command(nginx: str, conf: Path) -> list[str]:
    """``nginx`` in the foreground on ``conf``, its prefix the conf's folder."""
    return [nginx, "-p", str(conf.parent), "-c", str(conf), "-g", "daemon off;"]


@dataclass(frozen=True)
class AccessEntry:
    """One line of the template's ``interleave`` access log.

    Attributes:
        request_id: the x-request-id nginx forwarded (the client's).
        status: status nginx sent to the client.
        upstreams: every replica tried, in order (``["127.0.0.1:8001", "127.0.0.1:8002"]``).
        upstream_statuses: the status of each try (``["503", "200"]``; ``"502"`` for a failed one).
        end: the time nginx logged the request (seconds since the epoch).
        duration: request time in seconds (so it started at ``end - duration``).
    """

    request_id: str
    path: str
    status: int
    upstreams: tuple[str, ...]
    upstream_statuses: tuple[str, ...]
    end: float
    duration: float

    @property
    def final_upstream(self) -> str:
        return self.upstreams[-1] if self.upstreams else ""


_LINE = re.compile(
    r'msec=(?P<msec>[\d.]+) "(?P<method>\S+) (?P<path>\S+) [^"]*" (?P<status>\d+) \d+ '
    r'rt=(?P<rt>[\d.]+) up="(?P<up>[^"]*)" ust="(?P<ust>[^"]*)" urt="[^"]*" rid=(?P<rid>\S+)'
)


def _split(field: str) -> tuple[str, ...]:
    # nginx separates tries with ", " and upstream groups (internal redirects) with " : "
    return tuple(p.strip() for p in re.split(r"[,:] ", field) if p.strip() and p.strip() != "-")


def read_access_log(path: Path) -> dict[str, AccessEntry]:
    """The access log's entries by request id (the last line of an id wins)."""
    entries: dict[str, AccessEntry] = {}
    text = path.read_text(errors="replace") if path.exists() else ""
    for line in text.splitlines():
        m = _LINE.search(line)
        if not m:
            continue
        entries[m["rid"]] = AccessEntry(
            request_id=m["rid"],
            path=m["path"],
            status=int(m["status"]),
            upstreams=_split(m["up"]),
            upstream_statuses=_split(m["ust"]),
            end=float(m["msec"]),
            duration=float(m["rt"]),
        )
    return entries
