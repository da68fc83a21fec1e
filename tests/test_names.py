"""Names nobody else can take: named regions live in a private directory of their
user on tmpfs, so another local user who creates those names first (in /dev/shm,
where anyone can) stops nothing and gets nothing of ours mapped.

The squatting tests need root (to act as another user: ``nobody``, via setuid in a
forked child) and skip otherwise.
"""

from __future__ import annotations

import multiprocessing
import os
import pwd
import socket
import ssl
import stat
import uuid
from collections.abc import Callable, Iterator

import pytest

import tlsresume
from tlsresume import SessionStore, SharedMemoryError, TicketKeyRing
from tlsresume._rundir import ENV_VAR, candidates
from tlsresume.integrations import Resumption
from tlsresume.regions import list_regions, region_dir, region_path

from .handshake import fetch, prefork, server_context

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="acting as another user (nobody) needs root")
TLS13 = ssl.TLSVersion.TLSv1_3


@pytest.fixture(scope="module")
def cert(ca):  # type: ignore[no-untyped-def]
    return ca.issue_cert("localhost")


@pytest.fixture
def client(ca) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(ctx)
    return ctx


def _nobody() -> int:
    try:
        return pwd.getpwnam("nobody").pw_uid
    except KeyError:  # pragma: no cover - every Linux has one
        pytest.skip("no user 'nobody' on this machine")


def as_user(uid: int, fn: Callable[[], None]) -> None:
    """Run ``fn`` in a forked child that has become ``uid`` (gid too); fail the
    test if it raises."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            fn()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child running as another user failed"


@pytest.fixture
def squat() -> Iterator[Callable[[list[str], list[str]], None]]:
    """``squat(files, dirs)``: have nobody create those paths first (files mode
    0666, directories 0777, i.e. the most inviting a squatter could make them).
    Removed again afterwards (as root)."""
    made: list[str] = []

    def make(files: list[str], dirs: list[str]) -> None:
        def create() -> None:
            os.umask(0)
            for path in dirs:
                os.mkdir(path, 0o777)
            for path in files:
                with open(path, "wb") as f:
                    f.write(b"\0" * 8192)
                os.chmod(path, 0o666)

        as_user(_nobody(), create)
        made.extend(files + dirs)

    yield make
    for path in reversed(made):
        try:
            os.rmdir(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
        except OSError:
            pass


def _mapped_region_files() -> list[str]:
    """Paths of the files this process maps that look like tlsresume regions."""
    with open("/proc/self/maps") as maps:
        paths = {line.split(None, 5)[5].strip() for line in maps if len(line.split(None, 5)) == 6}
    return sorted(p for p in paths if "tlsresume." in os.path.basename(p))


def _assert_nothing_foreign_mapped(foreign: list[str]) -> None:
    mapped = _mapped_region_files()
    assert mapped, "expected this process to map its named regions"
    for path in mapped:
        assert path not in foreign, f"{path} of another user is mapped"
        st = os.stat(path.removesuffix(" (deleted)"))
        assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o600, path


def _spawned_server(
    ring: TicketKeyRing, certfile: str, keyfile: str, sock: socket.socket, conns: int
) -> None:
    """In a spawned interpreter: serve ``conns`` TLS connections with ``ring``
    (it arrived pickled as its name, i.e. attached by name)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    tlsresume.install(ctx, ring)
    for _ in range(conns):
        conn, _ = sock.accept()
        conn.settimeout(5)
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"%d\n" % os.getpid())
                tls.unwrap()
        except (OSError, ssl.SSLError):
            pass


# ---- the search order (pure) ---------------------------------------------------------


def test_candidates_follow_the_documented_order() -> None:
    """TLSRESUME_RUNTIME_DIR alone when set; else /run/tlsresume for root, the XDG
    runtime dir, then /dev/shm/tlsresume-<uid>; a relative override is refused."""
    assert [c.path for c in candidates({ENV_VAR: "/x/y/"}, 0)] == ["/x/y"]
    assert [c.path for c in candidates({"XDG_RUNTIME_DIR": "/run/user/0"}, 0)] == [
        "/run/tlsresume",
        "/run/user/0/tlsresume",
        "/dev/shm/tlsresume-0",
    ]
    assert [c.path for c in candidates({"XDG_RUNTIME_DIR": "/run/user/7"}, 7)] == [
        "/run/user/7/tlsresume",
        "/dev/shm/tlsresume-7",
    ]
    assert [c.path for c in candidates({"XDG_RUNTIME_DIR": "rel"}, 7)] == ["/dev/shm/tlsresume-7"]
    with pytest.raises(ValueError, match="absolute path"):
        candidates({ENV_VAR: "relative/dir"}, 7)


def test_region_directory_is_private_and_on_tmpfs() -> None:
    """The directory in use is ours, 0700, not a symlink; region files in it are 0600."""
    path = region_dir()
    st = os.lstat(path)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
    assert stat.S_IMODE(st.st_mode) == 0o700
    name = f"names-{uuid.uuid4().hex[:8]}"
    with TicketKeyRing(name=name) as ring:
        st = os.lstat(region_path("ring", name))
        assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o600
        ring.unlink()
    assert not os.path.exists(region_path("ring", name))


# ---- another user took the names first -------------------------------------------------


@needs_root
def test_squatted_names_block_nothing_and_nothing_foreign_is_mapped(
    squat, cert, client, monkeypatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """nobody creates the old /dev/shm names, /dev/shm/tlsresume-0 and an XDG dir
    of its own first: rings and stores still start, a fork-shared ring resumes
    across workers and a spawned process that attached by name resumes the same
    tickets, and no file of nobody's is mapped."""
    name = f"squat-{uuid.uuid4().hex[:8]}"
    uid = os.geteuid()
    old_names = [f"/dev/shm/tlsresume.{kind}.{name}" for kind in ("ring", "store")]
    xdg = f"/dev/shm/xdg-squat-{uuid.uuid4().hex[:6]}"
    per_user = f"/dev/shm/tlsresume-{uid}"
    dirs = [xdg, f"{xdg}/tlsresume"]
    if not os.path.lexists(per_user):
        dirs.append(per_user)
    squat(old_names, dirs)
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", xdg)

    ring = TicketKeyRing.open(name)
    store = SessionStore(name=name)
    try:
        foreign = old_names + dirs
        in_use = region_dir()
        assert in_use not in foreign
        st = os.lstat(in_use)
        assert st.st_uid == uid and stat.S_IMODE(st.st_mode) == 0o700
        for kind in ("ring", "store"):
            st = os.lstat(region_path(kind, name))
            assert st.st_uid == uid and stat.S_IMODE(st.st_mode) == 0o600
        _assert_nothing_foreign_mapped(foreign)
        assert {r.name for r in list_regions() if r.name == name} == {name}

        # The integrations' TLSRESUME_RING path opens the same ring.
        from_env = Resumption.from_environ({"TLSRESUME_RING": name})
        assert from_env.ring is not None and from_env.ring.name == name

        # Fork-shared: workers inherit the ring; a ticket from one resumes on another.
        with prefork(lambda: server_context(cert, ring, TLS13), workers=3) as fleet:
            session, resumed, first = fetch(fleet.port, client)
            assert not resumed
            workers = {first}
            for _ in range(40):
                session, resumed, pid = fetch(fleet.port, client, session)
                assert resumed
                workers.add(pid)
                if len(workers) >= 2:
                    break
            assert len(workers) >= 2

        # Spawn-shared: a separate interpreter attaches by name and accepts it too.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        certfile, keyfile = _cert_files(cert, str(tmp_path))
        proc = multiprocessing.get_context("spawn").Process(
            target=_spawned_server, args=(ring, certfile, keyfile, listener, 2)
        )
        proc.start()
        try:
            port = listener.getsockname()[1]
            session, resumed, pid = fetch(port, client, session)
            assert resumed and pid == proc.pid
            _, resumed, _ = fetch(port, client, session)
            assert resumed
        finally:
            proc.join(10)
            listener.close()
        assert proc.exitcode == 0
        _assert_nothing_foreign_mapped(foreign)
    finally:
        ring.unlink()
        store.unlink()
        ring.close()
        store.close()
    # What nobody made is still there, untouched and still theirs.
    for path in old_names:
        assert os.lstat(path).st_uid == _nobody()


def _cert_files(cert, d: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    certfile, keyfile = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    cert.private_key_and_cert_chain_pem.write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    return certfile, keyfile


@needs_root
def test_region_file_made_foreign_is_refused() -> None:
    """Negative control: our own region file, chowned to nobody, is refused by
    attach, open and SessionStore.open with a message naming the problem, and is
    never mapped."""
    name = f"foreign-{uuid.uuid4().hex[:8]}"
    TicketKeyRing(name=name).close()
    SessionStore("64K", name=name).close()
    paths = [region_path(kind, name) for kind in ("ring", "store")]
    for path in paths:
        os.chown(path, _nobody(), -1)
    try:
        for opener in (
            lambda: TicketKeyRing.attach(name),
            lambda: TicketKeyRing.open(name),
            lambda: SessionStore.attach(name),
            lambda: SessionStore.open(name, "64K"),
        ):
            with pytest.raises(SharedMemoryError, match="belongs to another user") as info:
                opener()
            assert "create it first" not in str(info.value)
        assert not set(paths) & set(_mapped_region_files())
    finally:
        for path in paths:
            os.unlink(path)


@needs_root
def test_foreign_runtime_dir_override_is_refused_clearly(squat, monkeypatch) -> None:
    """Negative control: TLSRESUME_RUNTIME_DIR naming a directory nobody made is
    refused with its owner and the fix, and nothing else is tried."""
    path = f"/dev/shm/override-{uuid.uuid4().hex[:6]}"
    squat([], [path])
    monkeypatch.setenv(ENV_VAR, path)
    with pytest.raises(SharedMemoryError) as info:
        TicketKeyRing(name="never-made")
    text = str(info.value)
    assert path in text and "nobody" in text and ENV_VAR in text


@needs_root
def test_unprivileged_user_gets_a_clear_error_when_its_last_candidate_is_taken(squat) -> None:
    """A user without a login session (no XDG_RUNTIME_DIR) whose
    /dev/shm/tlsresume-<uid> nobody made first cannot get a private directory:
    the error names the directory, its owner and the fix. Control: once the squat
    is gone, the same user starts."""
    uid = 65000 + os.getpid() % 400
    taken = f"/dev/shm/tlsresume-{uid}"
    squat([], [taken])

    def refused() -> None:
        os.environ.pop("XDG_RUNTIME_DIR", None)
        os.environ.pop(ENV_VAR, None)
        try:
            TicketKeyRing(name="blocked")
        except SharedMemoryError as exc:
            text = str(exc)
            assert taken in text and "nobody" in text and ENV_VAR in text, text
            return
        raise AssertionError("a directory another user owns was used")

    as_user(uid, refused)
    os.rmdir(taken)

    def starts() -> None:
        os.environ.pop("XDG_RUNTIME_DIR", None)
        os.environ.pop(ENV_VAR, None)
        with TicketKeyRing(name="free") as ring:
            assert os.lstat(region_path("ring", "free")).st_uid == uid
            ring.unlink()

    try:
        as_user(uid, starts)
    finally:
        if os.path.isdir(taken):
            os.rmdir(taken)


def test_runtime_dir_on_a_disk_is_refused_and_left_behind_nowhere(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """TLSRESUME_RUNTIME_DIR on a disk file system is refused (key material stays
    off disks), saying so, and the directory it would have made is not left."""
    from tlsresume._binding import ffi, lib

    status = ffi.new("tlsr_dir_status *")
    os.chmod(tmp_path, 0o700)
    lib.tlsr_dir_check(str(tmp_path).encode(), 0, 0, status)
    if status.reason != lib.TLSR_DIR_NOTTMPFS:
        pytest.skip(f"{tmp_path} is on tmpfs here; no disk directory to try")
    target = tmp_path / "regions"
    monkeypatch.setenv(ENV_VAR, str(target))
    with pytest.raises(SharedMemoryError, match="not on tmpfs") as info:
        TicketKeyRing(name="never-made")
    assert ENV_VAR in str(info.value)
    assert not target.exists()
