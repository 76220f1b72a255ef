"""A local single-node Elasticsearch for the quickstart and the tests.

The integration-test distribution (``org.elasticsearch.distribution.integ-test-zip``) is fetched from
Maven Central with ``mvn dependency:copy`` into a cache directory outside the repository, unpacked,
configured (loopback only, single-node discovery, free ports, a fixed heap) and started in the
background on the machine's JDK. Elasticsearch refuses to run as root, so under root the node runs as
a dedicated system user (``jrs-es``), created on first use.

State lives in ``<home>/nodes/<name>/state.json``; ``up`` is idempotent and ``down`` stops exactly the
process it started (by PID, after checking the PID still belongs to that node).

The version is :func:`toolkit.versions.es_version` (``JRS_ES_VERSION`` overrides the default) unless
named; 9.x needs a JDK 21+, found beside the default JDK when the one on PATH is older. With
``security`` the ``elastic`` user gets a random password (a 0600 file) and HTTP runs over TLS with a
certificate from a CA made for the node (``<node dir>/certs/ca.crt``; the CA key is deleted after use).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.versions import ES_MAVEN_ARTIFACT, es_version, required_java

_log = logging.getLogger(__name__)

NODE_USER = "jrs-es"
DEFAULT_HEAP = "1g"
#: A node name: a directory under ``<home>/nodes`` (no path separators, no leading dot).
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: An Elasticsearch release number (``8.19.21``, ``9.1.0-SNAPSHOT``).
VERSION_FORMAT = re.compile(r"\d+\.\d+\.\d+(?:-[A-Za-z0-9.]+)?")
#: Seconds a stopped node gets to exit on SIGTERM before SIGKILL.
STOP_GRACE = 30.0


class NodeError(ToolkitError):
    """The local node could not be fetched, started or stopped."""


@dataclass
class NodeState:
    """What ``up`` started: enough to reach it and to stop exactly it."""

    name: str
    version: str
    pid: int
    url: str
    http_port: int
    transport_port: int
    home: str
    security: bool
    username: str | None = None
    ca_certs: str | None = None


def toolkit_home() -> Path:
    """Cache root outside the repository (``JRS_HOME``; root's default must be readable by the node user)."""
    env = os.environ.get("JRS_HOME")
    if env:
        return Path(env).expanduser()
    if os.geteuid() == 0:
        return Path("/var/cache/jrecipe-search")
    return Path.home() / ".cache" / "jrecipe-search"


def check_name(name: str) -> str:
    """``name`` when it is a safe node name (letters, digits, ``_ . -``; a directory under ``nodes/``)."""
    if not NODE_NAME.fullmatch(name or ""):
        raise NodeError(
            f"node name {name!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_version(version: str) -> str:
    """``version`` when it looks like an Elasticsearch release number (``8.19.21``)."""
    if not VERSION_FORMAT.fullmatch(version or ""):
        raise NodeError(f"Elasticsearch version {version!r} is not a release number like 8.19.21")
    return version


def node_dir(name: str = "default") -> Path:
    return toolkit_home() / "nodes" / check_name(name)


def _which_or_fail(program: str, hint: str) -> str:
    path = shutil.which(program)
    if not path:
        raise NodeError(f"`{program}` was not found on PATH: {hint}")
    return path


#: Where JDKs are installed side by side (Debian/Ubuntu packages, Temurin).
JVM_DIRS = (Path("/usr/lib/jvm"),)


def java_feature_version(home: Path) -> int | None:
    """The JDK's feature release (17, 21, 25...) from ``<home>/release``, else from ``java -version``."""
    text = ""
    release = home / "release"
    if release.is_file():
        m = re.search(r'^JAVA_VERSION="([^"]+)"', release.read_text(errors="replace"), re.MULTILINE)
        text = m.group(1) if m else ""
    if not text:
        try:
            proc = subprocess.run([str(home / "bin" / "java"), "-version"], capture_output=True, text=True)
        except OSError:
            return None
        m = re.search(r'version "([^"]+)"', proc.stderr + proc.stdout)
        text = m.group(1) if m else ""
    m = re.match(r"(?:1\.)?(\d+)", text)
    return int(m.group(1)) if m else None


#: Lucene's SIMD vector code needs Java 21+: the node indexes vectors ~2.5x faster than on 17 (bench/).
PREFERRED_JAVA = 21


def java_home(version: str | None = None) -> Path:
    """The JDK to run Elasticsearch ``version`` on: ``ES_JAVA_HOME`` (must be new enough), else the first JDK of
    ``JAVA_HOME``, the ``java`` on PATH and the JDKs under :data:`JVM_DIRS` (newest first) that is Java
    :data:`PREFERRED_JAVA`+, else the first that is new enough for ``version``."""
    need = required_java(version or es_version())
    es_home = os.environ.get("ES_JAVA_HOME")
    if es_home:  # named for Elasticsearch: used as is, no silent substitute
        home = Path(es_home)
        if not (home / "bin" / "java").exists():
            raise NodeError(f"ES_JAVA_HOME={home} has no bin/java")
        found = java_feature_version(home)
        if found is not None and found < need:
            raise NodeError(
                f"ES_JAVA_HOME={home} is Java {found}; Elasticsearch {version} needs Java {need}+"
            )
        return home
    candidates: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        home = Path(os.environ["JAVA_HOME"])
        if not (home / "bin" / "java").exists():
            raise NodeError(f"JAVA_HOME={home} has no bin/java")
        candidates.append(home)
    java = shutil.which("java")
    if java:
        candidates.append(Path(os.path.realpath(java)).parent.parent)
    for root in JVM_DIRS:
        if root.is_dir():
            homes = [p for p in root.iterdir() if (p / "bin" / "java").exists() and not p.is_symlink()]
            candidates += sorted(homes, key=lambda p: java_feature_version(p) or 0, reverse=True)
    versions = [(home, java_feature_version(home) or 0) for home in candidates]
    for floor in (max(need, PREFERRED_JAVA), need):
        for home, found in versions:
            if found >= floor:
                return home
    raise NodeError(
        f"no JDK {need} or newer found for Elasticsearch {version or es_version()} (looked at the java on PATH "
        f"and {', '.join(map(str, JVM_DIRS))}); install one (Debian: apt-get install openjdk-{need}-jdk-headless "
        "or temurin-21-jdk) or set ES_JAVA_HOME"
    )


def fetch_distribution(version: str | None = None, quiet: bool = True) -> Path:
    """Download the integ-test zip with Maven (once) and return its path."""
    version = check_version(version or es_version())
    downloads = toolkit_home() / "downloads"
    zip_path = downloads / f"elasticsearch-{version}.zip"
    if zip_path.is_file() and zipfile.is_zipfile(zip_path):
        return zip_path
    mvn = _which_or_fail(
        "mvn", "install Maven (Debian: apt-get install maven) or set ES_URL to an existing cluster"
    )
    downloads.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn,
        "-B",
        *(["-q"] if quiet else []),
        "dependency:copy",
        f"-Dartifact={ES_MAVEN_ARTIFACT.format(version=version)}",
        f"-DoutputDirectory={downloads}",
        "-Dmdep.overWriteIfNewer=true",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=downloads)
    if proc.returncode != 0 or not zip_path.is_file():
        log = downloads / f"elasticsearch-{version}.maven.log"
        log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}", encoding="utf-8")
        raise NodeError(
            f"fetching Elasticsearch {version} from Maven Central failed: "
            f"{maven_failure(proc.stdout + proc.stderr)}; full Maven output in {log}"
        )
    return zip_path


def maven_failure(output: str) -> str:
    """Maven's reason for a failed ``dependency:copy``, in one line (no such version, no network...)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", output)
    missing = re.search(r"(\S+) was not found in (\S+)", text)
    if missing:
        return f"no such version ({missing.group(1)} was not found in {missing.group(2)})"
    errors = [line.removeprefix("[ERROR]").strip() for line in text.splitlines() if "[ERROR]" in line]
    first = next((e for e in errors if e), "") or (text.strip().splitlines() or ["no output"])[-1]
    reason = re.sub(r"^Failed to execute goal .*? on project [^:]+: ", "", first)
    return reason if len(reason) <= 300 else reason[:297] + "..."


def install_distribution(version: str | None = None) -> Path:
    """Unpack the distribution (once) and return its home directory."""
    version = check_version(version or es_version())
    dist_root = toolkit_home() / "dist"
    home = dist_root / f"elasticsearch-{version}"
    if (home / "bin" / "elasticsearch").is_file():
        return home
    zip_path = fetch_distribution(version)
    tmp = dist_root / f".unpack-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            target = zf.extract(info, tmp)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(target, mode)
    os.replace(tmp / f"elasticsearch-{version}", home)
    shutil.rmtree(tmp, ignore_errors=True)
    _make_world_readable(toolkit_home())
    return home


def _make_world_readable(path: Path) -> None:
    """Let the unprivileged node user traverse and read the cache (root case)."""
    if os.geteuid() != 0:
        return
    for dirpath, _dirnames, filenames in os.walk(path):
        os.chmod(dirpath, os.stat(dirpath).st_mode | 0o755)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | stat.S_IRGRP | stat.S_IROTH)


def free_port(preferred: int | None = None, strict: bool = False) -> int:
    """A free loopback TCP port: the preferred one when it is free (``strict``: or an error), else any.

    The probe uses ``SO_REUSEADDR`` as Elasticsearch does, so a port whose old connections linger in
    TIME_WAIT (a node just killed) still counts as free.
    """
    if preferred is not None and not 0 <= preferred <= 65535:
        raise NodeError(f"port {preferred} is not a TCP port (1-65535)")
    candidates = [preferred] if preferred else []
    for port in [*candidates, 0]:
        if port == 0 and strict and preferred:
            raise NodeError(f"port {preferred} on 127.0.0.1 is in use")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise NodeError("no free port on 127.0.0.1")


def _ensure_node_user() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam(NODE_USER)
    except KeyError:
        useradd = _which_or_fail("useradd", "Elasticsearch cannot run as root; create an unprivileged user")
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NODE_USER],
            check=True,
            capture_output=True,
        )
        pw = pwd.getpwnam(NODE_USER)
    return pw.pw_uid, pw.pw_gid


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    for dirpath, _dirs, files in os.walk(path):
        os.chown(dirpath, uid, gid)
        for f in files:
            os.chown(os.path.join(dirpath, f), uid, gid)


def _openssl(*args: str, cwd: Path) -> None:
    openssl = _which_or_fail("openssl", "needed to make the TLS certificates of a secured local node")
    proc = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NodeError(f"openssl {args[0]} failed: {proc.stderr.strip()[-500:]}")


def make_certificates(ndir: Path) -> Path:
    """A CA and a certificate for 127.0.0.1/localhost signed by it, under ``<ndir>/certs`` (once).

    Returns the CA certificate clients pass as ``ES_CA_CERTS``. The CA key is deleted after signing.
    """
    certs = ndir / "certs"
    if all((certs / f).is_file() for f in ("ca.crt", "node.crt", "node.key")):
        return certs / "ca.crt"
    shutil.rmtree(certs, ignore_errors=True)
    certs.mkdir(parents=True)
    days = "825"
    ca_ext = [
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        days,
        "-subj",
        f"/CN=jrecipe-search local CA ({ndir.name})",
        *ca_ext,
        cwd=certs,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "node.key",
        "-out",
        "node.csr",
        "-subj",
        "/CN=localhost",
        cwd=certs,
    )
    (certs / "node.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        encoding="utf-8",
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "node.crt",
        "-days",
        days,
        "-extfile",
        "node.ext",
        cwd=certs,
    )
    for leftover in ("ca.key", "ca.srl", "node.csr", "node.ext"):
        (certs / leftover).unlink(missing_ok=True)
    os.chmod(certs / "node.key", 0o600)
    os.chmod(certs / "ca.crt", 0o644)
    return certs / "ca.crt"


def _write_config(
    ndir: Path,
    dist: Path,
    name: str,
    http_port: int,
    transport_port: int,
    security: bool,
    extra: dict | None,
    tls: bool = False,
) -> Path:
    conf = ndir / "config"
    if conf.exists():
        shutil.rmtree(conf)
    shutil.copytree(dist / "config", conf)
    settings = {
        "cluster.name": f"jrs-{name}",
        "node.name": name,
        "network.host": "127.0.0.1",
        "http.port": http_port,
        "transport.port": transport_port,
        "discovery.type": "single-node",
        "path.data": str(ndir / "data"),
        "path.logs": str(ndir / "logs"),
        "xpack.security.enabled": security,
        "cluster.routing.allocation.disk.threshold_enabled": False,
        "action.destructive_requires_name": True,
    }
    if tls:
        (conf / "certs").mkdir()
        for f in ("ca.crt", "node.crt", "node.key"):
            shutil.copy2(ndir / "certs" / f, conf / "certs" / f)
        settings.update(
            {
                "xpack.security.http.ssl.enabled": True,
                "xpack.security.http.ssl.key": "certs/node.key",
                "xpack.security.http.ssl.certificate": "certs/node.crt",
                "xpack.security.http.ssl.certificate_authorities": ["certs/ca.crt"],
            }
        )
    settings.update(extra or {})
    lines = [f"{k}: {json.dumps(v)}" for k, v in settings.items()]
    (conf / "elasticsearch.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (conf / "jvm.options.d").mkdir(exist_ok=True)
    heap = os.environ.get("JRS_ES_HEAP", DEFAULT_HEAP)
    (conf / "jvm.options.d" / "heap.options").write_text(f"-Xms{heap}\n-Xmx{heap}\n", encoding="utf-8")
    return conf


def _http_get(
    url: str, auth: tuple[str, str] | None = None, timeout: float = 5.0, ca_certs: str | None = None
) -> dict:
    req = urllib.request.Request(url)
    if auth:
        import base64

        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=ca_certs) if url.startswith("https:") else None
    with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
        return json.loads(resp.read())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_is_node(pid: int, ndir: Path) -> bool:
    """True when ``pid`` is an Elasticsearch JVM using this node's config directory."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\x00", b" ").decode(errors="replace")
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "org.elasticsearch" in cmdline and str(ndir / "config") in environ + cmdline


def read_state(name: str = "default") -> NodeState | None:
    path = node_dir(name) / "state.json"
    if not path.is_file():
        return None
    return NodeState(**json.loads(path.read_text(encoding="utf-8")))


def node_password(name: str = "default") -> str | None:
    """The password of the ``elastic`` user of a secured local node (kept in a 0600 file)."""
    path = node_dir(name) / "elastic-password"
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def health(state: NodeState, timeout: float = 5.0) -> dict | None:
    auth = ("elastic", node_password(state.name) or "") if state.security else None
    try:
        return _http_get(f"{state.url}/_cluster/health", auth=auth, timeout=timeout, ca_certs=state.ca_certs)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def status(name: str = "default") -> tuple[NodeState | None, dict | None]:
    """The recorded node and its cluster health (None when it is not answering)."""
    state = read_state(name)
    if state is None or not _pid_alive(state.pid):
        return state, None
    return state, health(state)


def running_nodes() -> list[NodeState]:
    """The local nodes that answer now, by name: each ``<home>/nodes/<name>/state.json`` whose process runs and
    whose cluster health answers (an unreadable state file is skipped)."""
    root = toolkit_home() / "nodes"
    found: list[NodeState] = []
    for ndir in sorted(root.iterdir()) if root.is_dir() else []:
        if not NODE_NAME.fullmatch(ndir.name):
            continue
        try:
            state, h = status(ndir.name)
        except (OSError, ValueError, TypeError) as e:  # a state file half written or of another version
            _log.debug("skipping node %s: %s", ndir.name, e)
            continue
        if state is not None and h is not None:
            found.append(state)
    return found


def up(
    name: str = "default",
    version: str | None = None,
    port: int | None = None,
    security: bool = False,
    timeout: float = 180.0,
    extra_settings: dict | None = None,
    tls: bool | None = None,
    transport_port: int | None = None,
) -> NodeState:
    """Start (or reuse) the local node and wait until it answers with yellow or green health.

    ``tls`` (default: as ``security``) serves HTTPS with a certificate from a CA made for the node;
    ``transport_port`` fixes the transport port (for a cluster of local nodes, with ``extra_settings``).
    ``timeout`` (seconds, > 0) bounds the start once the distribution is installed: a node not healthy by
    then is stopped, not left behind.
    Progress notes go to this module's logger at info level.
    """
    version = check_version(version or es_version())
    if not timeout > 0:
        raise NodeError(f"the start timeout must be more than 0 seconds, got {timeout}")
    tls = security if tls is None else tls
    ndir = node_dir(name)
    state = read_state(name)
    if state and _pid_alive(state.pid) and _pid_is_node(state.pid, ndir) and health(state):
        if state.version != version or state.security != security:
            raise NodeError(
                f"node '{name}' is already running {state.version} (security={state.security}); "
                f"run `jrs es down --name {name}` first"
            )
        return state
    dist = install_distribution(version)
    jhome = java_home(version)
    http_port = free_port(port or (9200 if name == "default" else None), strict=port is not None)
    transport_port = free_port(transport_port, strict=transport_port is not None)
    for sub in ("data", "logs"):
        (ndir / sub).mkdir(parents=True, exist_ok=True)
    ca_certs = str(make_certificates(ndir)) if tls else None
    conf = _write_config(ndir, dist, name, http_port, transport_port, security, extra_settings, tls)
    password = None
    if security:
        password = node_password(name) or secrets.token_urlsafe(18)
        pw_file = ndir / "elastic-password"
        pw_file.write_text(password, encoding="utf-8")
        os.chmod(pw_file, 0o600)
        env_ks = {**os.environ, "ES_PATH_CONF": str(conf), "ES_JAVA_HOME": str(jhome)}
        subprocess.run(
            [str(dist / "bin" / "elasticsearch-keystore"), "create"],
            env=env_ks,
            capture_output=True,
            check=False,
        )
        subprocess.run(
            [str(dist / "bin" / "elasticsearch-keystore"), "add", "-x", "-f", "bootstrap.password"],
            input=password,
            text=True,
            env=env_ks,
            capture_output=True,
            check=True,
        )
    pid_file = ndir / "es.pid"
    pid_file.unlink(missing_ok=True)
    cmd = [str(dist / "bin" / "elasticsearch"), "-d", "-p", str(pid_file)]
    if os.geteuid() == 0:
        uid, gid = _ensure_node_user()
        _chown_tree(ndir, uid, gid)
        os.chmod(ndir.parent, 0o755)
        if (ndir / "elastic-password").exists():
            os.chown(ndir / "elastic-password", 0, 0)
        cmd = [
            _which_or_fail("runuser", "needed to start Elasticsearch as a non-root user"),
            "-u",
            NODE_USER,
            "--",
            *cmd,
        ]
    env = {
        **os.environ,
        "ES_PATH_CONF": str(conf),
        "ES_JAVA_HOME": str(jhome),
        "ES_TMPDIR": str(ndir / "tmp"),
    }
    env.pop("ES_JAVA_OPTS", None)
    (ndir / "tmp").mkdir(exist_ok=True)
    if os.geteuid() == 0:
        os.chown(ndir / "tmp", *_ensure_node_user())
    url = f"{'https' if tls else 'http'}://127.0.0.1:{http_port}"
    _log.info(f"starting Elasticsearch {version} on {url} (java: {jhome})")
    deadline = time.monotonic() + timeout
    launcher, proc, pid = _launch(cmd, env, ndir, pid_file, deadline, timeout)
    state = NodeState(
        name=name,
        version=version,
        pid=pid,
        url=url,
        http_port=http_port,
        transport_port=transport_port,
        home=str(ndir),
        security=security,
        username="elastic" if security else None,
        ca_certs=ca_certs,
    )
    (ndir / "state.json").write_text(json.dumps(asdict(state), indent=2), encoding="utf-8")
    try:
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                raise NodeError(f"Elasticsearch exited during start-up:\n{_log_tail(ndir, proc)}")
            h = health(state)
            if h and h.get("status") in ("yellow", "green"):
                return state
            time.sleep(0.5)
    except KeyboardInterrupt:  # stop what was started, as on a timeout
        _abandon_start(launcher, pid_file, ndir)
        raise
    raise _timed_out(ndir, timeout, _abandon_start(launcher, pid_file, ndir))


def _launch(
    cmd: list[str], env: dict[str, str], ndir: Path, pid_file: Path, deadline: float, timeout: float
) -> tuple[subprocess.Popen, subprocess.CompletedProcess, int]:
    """Run the daemonising start script until it returns: the finished launcher, its output and the node's PID.

    The script runs in a session of its own, so the node it forks can be stopped with it when the start
    runs past ``deadline`` (or is interrupted) before the node has written its PID file.
    """
    launcher = subprocess.Popen(
        cmd,
        env=env,
        cwd=ndir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = launcher.communicate(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise _timed_out(ndir, timeout, _abandon_start(launcher, pid_file, ndir)) from None
    except BaseException:
        _abandon_start(launcher, pid_file, ndir)
        raise
    proc = subprocess.CompletedProcess(cmd, launcher.returncode, out, err)
    pid = _read_pid(pid_file)
    if proc.returncode != 0 or pid is None:
        _abandon_start(launcher, pid_file, ndir)
        raise NodeError(f"Elasticsearch failed to start (exit {proc.returncode}):\n{_log_tail(ndir, proc)}")
    return launcher, proc, pid


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _running(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return _pid_alive(pid)
    return stat_line.rsplit(")", 1)[-1].split()[0] != "Z"


def _group_members(group: int) -> list[int]:
    """The processes of process group ``group`` (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if int(fields[2]) == group:
                members.append(int(entry.name))
    return members


def _abandon_start(launcher: subprocess.Popen, pid_file: Path, ndir: Path) -> list[int]:
    """Stop a start that failed, ran out of time or was interrupted: the launcher, every process of its
    session's process group (the node it forks is one, also one forked while this runs) and the node whose
    PID file it wrote (SIGTERM, SIGKILL after :data:`STOP_GRACE`); forget the node's state. Returns the PIDs
    stopped, the launcher's aside."""
    if launcher.poll() is None:
        launcher.kill()
    launcher.wait()
    for pipe in (launcher.stdout, launcher.stderr):
        if pipe is not None:
            pipe.close()
    stopped: set[int] = set()
    kill_at = time.monotonic() + STOP_GRACE
    while time.monotonic() < kill_at + 5.0:
        running = {p for p in _started_processes(launcher.pid, pid_file, ndir) if _running(p)}
        if not running:
            break
        late = time.monotonic() >= kill_at
        for p in running if late else running - stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL if late else signal.SIGTERM)
        stopped |= running
        time.sleep(0.2)
    (ndir / "state.json").unlink(missing_ok=True)
    pid_file.unlink(missing_ok=True)
    return sorted(stopped)


def _started_processes(group: int, pid_file: Path, ndir: Path) -> set[int]:
    """What a start made: the processes of the launcher's group and the node its PID file names."""
    found = set(_group_members(group))
    pid = _read_pid(pid_file)
    if pid is not None and _pid_alive(pid) and _pid_is_node(pid, ndir):
        found.add(pid)
    return found


def _timed_out(ndir: Path, timeout: float, stopped: list[int]) -> NodeError:
    """The error of a start that ran past ``timeout``, saying what was stopped."""
    what = (
        f"stopped the Elasticsearch processes it started (pid {', '.join(map(str, stopped))})"
        if stopped
        else "no Elasticsearch process was left running"
    )
    return NodeError(
        f"Elasticsearch did not become healthy within {timeout:g} s (--timeout); {what}; logs in {ndir / 'logs'}"
    )


def _log_tail(ndir: Path, proc: subprocess.CompletedProcess | None = None, lines: int = 40) -> str:
    out = []
    if proc is not None:
        out.append((proc.stdout or "") + (proc.stderr or ""))
    logs = [p for p in (ndir / "logs").glob("*.log") if not p.name.startswith("gc")]
    logs.sort(key=lambda p: p.stat().st_mtime)
    if logs:
        out.append("\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:]))
    return "\n".join(s for s in out if s.strip())[-6000:]


def down(name: str = "default", timeout: float = 60.0, kill: bool = False) -> bool:
    """Stop the node started by ``up`` (SIGTERM, then SIGKILL); True when a process was stopped."""
    ndir = node_dir(name)
    state = read_state(name)
    if state is None:
        return False
    stopped = False
    if _pid_alive(state.pid) and _pid_is_node(state.pid, ndir):
        os.kill(state.pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_alive(state.pid):
            os.kill(state.pid, signal.SIGKILL)
            time.sleep(0.5)
        stopped = True
    if not kill:
        (ndir / "state.json").unlink(missing_ok=True)
    return stopped


def destroy(name: str) -> None:
    """Stop a node and delete its data (used by tests for throw-away nodes)."""
    down(name)
    shutil.rmtree(node_dir(name), ignore_errors=True)
