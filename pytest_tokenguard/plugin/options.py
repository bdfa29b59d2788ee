"""Every option of the plugin, its ini twin, and the :class:`Settings` they resolve to.

Options are declared once, in :data:`OPTIONS`; :func:`add_options` adds each to pytest's
command line and, except ``--tokenguard-update``, to the ini file (an ini switch that
always accepted changes would turn the gate off for good). :func:`resolve` reads them
once per run, with one rule for relative paths (a command-line path is relative to
where pytest was started, an ini path to the ini file) and one way to report a bad
value: a :class:`pytest.UsageError` that names the option or ini key and the fix.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from ..baseline.compare import DEFAULT_GPU_TOLERANCE, GpuTolerance, parse_tolerance
from ..baseline.gate import GateSettings
from ..baseline.store import DEFAULT_BASELINE
from ..processor.source import DEFAULT_NETWORK_TIMEOUT, ENV_MODEL
from ..specs import DEFAULT_MODEL

__all__ = ["DEFAULT_RESOLUTIONS", "OPTIONS", "Option", "Settings", "add_options", "in_ci",
           "pixel_family", "resolve"]

DEFAULT_RESOLUTIONS = (384, 512, 768, 1024, 1536)

Kind = Literal["flag", "text", "path"]


@dataclass(frozen=True)
class Option:
    """One ``--tokenguard-*`` option and its ini twin (``ini=None``: command line only)."""

    flag: str
    kind: Kind
    help: str
    ini: str | None
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("--tokenguard", "flag", "activate the tokenguard markers, record processor calls, "
           "gate figures against the baseline, print the summary", "tokenguard"),
    Option("--tokenguard-model", "text", f"hub id or checkpoint folder of the processor (env "
           f"{ENV_MODEL} sits between the option and the ini value; default {DEFAULT_MODEL})",
           "tokenguard_model", "M"),
    Option("--tokenguard-resolutions", "text", "comma-separated longest_edge values of the "
           "processor fixtures for a SmolVLM2 model (default "
           + ",".join(map(str, DEFAULT_RESOLUTIONS)) + "; a Qwen-VL model takes "
           "--tokenguard-max-pixels)", "tokenguard_resolutions", "N,N"),
    Option("--tokenguard-max-pixels", "text", "comma-separated max_pixels values of the "
           "processor fixtures for a Qwen-VL model: each loads "
           "AutoProcessor.from_pretrained(model, max_pixels=N), test ids mp200704... "
           "(default: the checkpoint's own; a SmolVLM2 model takes --tokenguard-resolutions)",
           "tokenguard_max_pixels", "N,N"),
    Option("--tokenguard-network-timeout", "text", "seconds to wait for the hub before using "
           f"the embedded default (default {DEFAULT_NETWORK_TIMEOUT:g})",
           "tokenguard_network_timeout", "S"),
    Option("--tokenguard-require-gpu", "flag", "fail, instead of skip, limit_gpu_memory tests "
           "when no CUDA device is usable (for GPU CI jobs, which must not go green by "
           "skipping)", "tokenguard_require_gpu"),
    Option("--tokenguard-baseline", "path", "baseline file to compare against (default "
           f"{DEFAULT_BASELINE} under the rootdir)", "tokenguard_baseline", "PATH"),
    Option("--tokenguard-update", "flag", "accept the figures measured now: rewrite the "
           "baseline entries of the tests that ran and passed (entries of deleted tests go "
           "only on a whole-suite run)", None),
    Option("--tokenguard-allow-new", "flag", "add entries for tests missing from the baseline "
           "instead of failing them in CI", "tokenguard_allow_new"),
    Option("--tokenguard-gpu-tolerance", "text", "how far a GPU peak may rise above the "
           "baseline before the test fails: a percentage (10%) or memory (512MiB) (default "
           f"{DEFAULT_GPU_TOLERANCE})", "tokenguard_gpu_tolerance", "TOL"),
    Option("--tokenguard-json", "path", "write every measured figure and its baseline status "
           "as JSON (for dashboards)", "tokenguard_json", "PATH"),
)

#: command-line flags that only mean something with the plugin on
NEED_ENABLED = ("--tokenguard-update", "--tokenguard-allow-new", "--tokenguard-json",
                "--tokenguard-require-gpu")


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("tokenguard", "token budget and GPU memory guards (tokenguard)")
    for option in OPTIONS:
        # argparse formats help with %: a literal percent sign must be doubled
        help_text = option.help.replace("%", "%%")
        if option.kind == "flag":
            group.addoption(option.flag, action="store_true", default=None, help=help_text)
        else:
            group.addoption(option.flag, default=None, metavar=option.metavar, help=help_text)
        if option.ini is not None:
            same = f"same as {option.flag}"
            if option.kind == "path":
                same += ", relative to the ini file"
            if option.kind == "flag":
                parser.addini(option.ini, same, type="bool", default=False)
            else:
                parser.addini(option.ini, same, type="string", default="")


def in_ci() -> bool:
    """``CI`` set to anything but an empty string, 0, false or no (GitHub Actions, GitLab,
    CircleCI... all set ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Settings:
    """Everything the plugin was configured with, resolved once per run."""

    enabled: bool
    model: str
    resolutions: tuple[int, ...]
    #: "--tokenguard-resolutions=512 narrows the resolutions (...)" when the command line
    #: runs fewer resolutions than the ini file or the default: a subset run for the gate
    resolutions_narrowed: str | None
    network_timeout: float
    require_gpu: bool
    gate: GateSettings
    #: the max_pixels values of the processor fixtures for a Qwen-VL model (None: the
    #: checkpoint's own)
    max_pixels: tuple[int, ...] | None = None


class _Reader:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        self.ini_dir = base

    def cli(self, option: Option) -> Any:
        return self.config.getoption(option.dest)

    def ini(self, option: Option) -> Any:
        if option.ini is None:
            return None
        try:
            return self.config.getini(option.ini)
        except (ValueError, pytest.UsageError) as exc:  # a bool that is not: "invalid truth value"
            raise pytest.UsageError(
                f"{option.ini} (ini) in {self._ini_file()}: {exc}; write {option.ini} = true "
                f"or {option.ini} = false"
            ) from None

    def _ini_file(self) -> str:
        return str(self.config.inipath) if self.config.inipath is not None else "the ini file"

    def flag(self, option: Option) -> bool:
        """The command line's switch, else the ini value; the ini value is read and
        checked either way, so a bad one fails even when the option is given."""
        ini = self.ini(option)
        value = self.cli(option)
        return bool(value if value is not None else ini)

    def text(self, option: Option) -> tuple[str, str] | None:
        """(value, origin) from the command line, else the ini file, else None."""
        value = self.cli(option)
        if value is not None:
            return str(value), option.flag
        value = self.ini(option)
        if value:
            return str(value).strip(), f"{option.ini} (ini)"
        return None

    def path(self, option: Option) -> Path | None:
        value = self.cli(option)
        if value:
            return (self.config.invocation_params.dir / str(value)).resolve()
        value = self.ini(option)
        if value:
            return (self.ini_dir / str(value)).resolve()
        return None


def _by_flag(flag: str) -> Option:
    return next(option for option in OPTIONS if option.flag == flag)


def parse_resolutions(raw: str, origin: str, what: str = "longest_edge",
                      example: str = "384,512,1536") -> tuple[int, ...]:
    values = []
    for part in raw.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            value = 0
        if value < 1:
            raise pytest.UsageError(
                f"{origin}: {part!r} is not a valid {what}; give positive integers such "
                f"as {example}"
            )
        values.append(value)
    if not values:
        raise pytest.UsageError(f"{origin}: no {'resolutions' if what == 'longest_edge' else what}"
                                f" given; e.g. {example}")
    return tuple(dict.fromkeys(values))


def _timeout(read: _Reader) -> float:
    given = read.text(_by_flag("--tokenguard-network-timeout"))
    if given is None:
        return DEFAULT_NETWORK_TIMEOUT
    raw, origin = given
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise pytest.UsageError(
            f"{origin}: {raw!r} is not a number of seconds; give e.g. 3 (0 never waits)"
        )
    return value


def _model(read: _Reader) -> str:
    """Command line, then ``$TOKENGUARD_MODEL``, then ini (a path starting with ``.`` or
    ``~`` relative to the ini file), then the default."""
    option = _by_flag("--tokenguard-model")
    cli = read.cli(option)
    if cli:
        return str(cli)
    env = os.environ.get(ENV_MODEL)
    if env:
        return env
    ini = str(read.ini(option) or "").strip()
    if ini:
        if ini.startswith("."):
            return str((read.ini_dir / ini).resolve())
        return os.path.expanduser(ini)
    return DEFAULT_MODEL


def _tolerance(read: _Reader) -> GpuTolerance:
    given = read.text(_by_flag("--tokenguard-gpu-tolerance"))
    raw, origin = given if given is not None else (DEFAULT_GPU_TOLERANCE, "default")
    try:
        return parse_tolerance(raw)
    except ValueError as exc:
        raise pytest.UsageError(f"{origin}: {exc}") from None


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file: the same resolved path (links followed), or
    the same device and inode (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _shown(path: Path, rootdir: Path) -> str:
    try:
        return path.relative_to(rootdir).as_posix()
    except ValueError:
        return str(path)


def resolve(config: pytest.Config) -> Settings:
    """Read and validate every option once; a bad value is a UsageError naming it."""
    read = _Reader(config)
    enabled = read.flag(_by_flag("--tokenguard"))
    if not enabled:
        given = [flag for flag in NEED_ENABLED if read.cli(_by_flag(flag))]
        if given:
            verb = "needs" if len(given) == 1 else "need"
            raise pytest.UsageError(
                f"{', '.join(given)} {verb} --tokenguard (or ini tokenguard = true): without "
                "it the tokenguard markers are inert; run pytest --tokenguard " + " ".join(given)
            )
    resolutions_option = _by_flag("--tokenguard-resolutions")
    chosen = read.text(resolutions_option)
    resolutions = parse_resolutions(*chosen) if chosen is not None else DEFAULT_RESOLUTIONS
    narrowed = None
    if chosen is not None and chosen[1] == resolutions_option.flag:
        ini = read.ini(resolutions_option)
        configured = (parse_resolutions(str(ini), "tokenguard_resolutions (ini)") if ini
                      else DEFAULT_RESOLUTIONS)
        if set(resolutions) < set(configured):
            narrowed = (f"--tokenguard-resolutions={','.join(map(str, resolutions))} runs fewer "
                        f"resolutions than configured ({','.join(map(str, configured))})")
    max_pixels_option = _by_flag("--tokenguard-max-pixels")
    chosen_pixels = read.text(max_pixels_option)
    max_pixels = (parse_resolutions(*chosen_pixels, what="max_pixels",
                                    example="200704,1003520")
                  if chosen_pixels is not None else None)
    if max_pixels is not None and chosen_pixels is not None \
            and chosen_pixels[1] == max_pixels_option.flag:
        ini = read.ini(max_pixels_option)
        if ini:
            configured = parse_resolutions(str(ini), "tokenguard_max_pixels (ini)",
                                           what="max_pixels", example="200704,1003520")
            if set(max_pixels) < set(configured):
                narrowed = (f"--tokenguard-max-pixels={','.join(map(str, max_pixels))} runs "
                            f"fewer max_pixels than configured ({','.join(map(str, configured))})")
    model = _model(read)
    _family_options(model, read, chosen, chosen_pixels)
    baseline = read.path(_by_flag("--tokenguard-baseline"))
    explicit = baseline is not None
    if baseline is None:
        baseline = (config.rootpath / DEFAULT_BASELINE).resolve()
    json_path = read.path(_by_flag("--tokenguard-json"))
    if json_path is not None and _same_file(json_path, baseline):
        given = read.cli(_by_flag("--tokenguard-json"))
        origin = (f"--tokenguard-json={given}" if given
                  else f"tokenguard_json = {read.ini(_by_flag('--tokenguard-json'))} (ini)")
        raise pytest.UsageError(
            f"{origin} is the baseline {_shown(baseline, config.rootpath)} (the same file): the "
            "report would overwrite it; write the report elsewhere, e.g. "
            "--tokenguard-json=tokenguard-report.json"
        )
    gate = GateSettings(
        path=baseline,
        shown=_shown(baseline, config.rootpath),
        explicit=explicit,
        update=bool(read.cli(_by_flag("--tokenguard-update"))),
        allow_new=read.flag(_by_flag("--tokenguard-allow-new")),
        ci=in_ci(),
        tolerance=_tolerance(read),
        json_path=json_path,
    )
    return Settings(
        enabled=enabled,
        model=model,
        resolutions=resolutions,
        resolutions_narrowed=narrowed,
        network_timeout=_timeout(read),
        require_gpu=read.flag(_by_flag("--tokenguard-require-gpu")),
        gate=gate,
        max_pixels=max_pixels,
    )


def pixel_family(model: str) -> str | None:
    """The name of ``model``'s family when it is resized by a pixel budget (Qwen-VL:
    ``qwen-vl``), else None (SmolVLM2, and a model no family claims: the SmolVLM2 resolver
    then answers, with its own messages). Decided from files and known ids, offline."""
    from ..errors import SpecError
    from ..families import resolve_family

    try:
        found = resolve_family(model)
    except (SpecError, ValueError, RecursionError):  # the loader names a broken file
        return None
    if found is None or found.family.name == "smolvlm":
        return None
    return found.family.name


def _family_options(model: str, read: _Reader, resolutions: tuple[str, str] | None,
                    max_pixels: tuple[str, str] | None) -> None:
    """A resolution option of the other family, given on the command line, is a usage
    error naming the one to use (an ini value shared by suites of both is left alone)."""
    given = [(flag, origin) for flag, origin in (
        ("--tokenguard-resolutions", resolutions and resolutions[1]),
        ("--tokenguard-max-pixels", max_pixels and max_pixels[1])) if origin == flag]
    if not given:
        return
    family = pixel_family(model)
    for flag, _ in given:
        if flag == "--tokenguard-resolutions" and family is not None:
            raise pytest.UsageError(
                f"--tokenguard-resolutions sets SmolVLM2's longest_edge; {model} is a {family} "
                "model, resized by a pixel budget: pass --tokenguard-max-pixels=200704,1003520")
        if flag == "--tokenguard-max-pixels" and family is None:
            raise pytest.UsageError(
                f"--tokenguard-max-pixels sets a Qwen-VL model's max_pixels; {model} is resized "
                "by longest_edge: pass --tokenguard-resolutions=384,512 (or a Qwen-VL model to "
                "--tokenguard-model)")


def testpath_roots(config: pytest.Config) -> list[Path]:
    """The ``testpaths`` ini value, globbed relative to the rootdir."""
    rootdir = config.rootpath
    return [Path(p).resolve() for pattern in config.getini("testpaths")
            for p in sorted(glob.iglob(str(rootdir / pattern), recursive=True))]
