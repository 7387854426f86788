"""The documentation says only what is there: every link and every ``scripts/``/``docs/`` path
resolves, every option shown for a command is one the command has, and every setting shown for
``python -m fastnst.train`` / ``fastnst.optimize`` is a key of its config."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@cache
def console_scripts() -> dict[str, str]:
    """fastnst's console scripts (name -> "module:function"), as installed from pyproject."""
    from importlib.metadata import entry_points

    return {
        e.name: e.value
        for e in entry_points(group="console_scripts")
        if e.value.startswith("fastnst.")
    }


PAGES = sorted([REPO / "README.md", REPO / "checkpoints" / "README.md", *REPO.glob("docs/**/*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")
PATH = re.compile(r"(?<![\w./-])((?:scripts|docs)/[\w./-]*[\w/])")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
# Where a command's text ends on a line: the next command, a comment, a pipe or a redirect.
COMMAND_END = re.compile(r"#|\||&&|;|>|`")
HYDRA_ENTRIES = {"fastnst.train": "config", "fastnst.optimize": "optimize"}


def _id(page: Path) -> str:
    return str(page.relative_to(REPO))


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def headings(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def test_the_pages_are_found():
    names = {_id(p) for p in PAGES}
    assert {"README.md", "docs/training.md", "docs/experiments/recipe.md"} <= names
    assert {"fastnst-stylize", "fastnst-app", "fastnst-export"} <= set(console_scripts())


def test_the_readme_is_a_front_door():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_link_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in headings(dest):
            broken.append(f"{target}: no heading #{fragment} in {dest.name}")
    assert not broken, broken


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_scripts_and_docs_path_exists(page):
    text = page.read_text(encoding="utf-8")
    missing = sorted({p for p in PATH.findall(text) if not (REPO / p).exists()})
    assert not missing, missing


@cache
def _command_options(command: str) -> set[str]:
    """The options of a console script, read from its own --help."""
    module, _, function = console_scripts()[command].partition(":")
    main = getattr(importlib.import_module(module), function)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["--help"])
    return set(OPTION.findall(out.getvalue())) | {"--help"}


@cache
def _script_options(script: str) -> set[str]:
    """The options a script defines: its own add_argument calls and those of the fastnst
    helpers it calls to add options."""
    source = (REPO / script).read_text(encoding="utf-8")
    for name in re.findall(r"^(?:from|import) ([\w.]+)", source, re.M):
        sibling = REPO / "scripts" / f"{name.replace('.', '/')}.py"
        if sibling.is_file() and str(sibling.relative_to(REPO)) != script:
            source += sibling.read_text(encoding="utf-8")
    if "add_tiling_options" in source:
        source += (REPO / "fastnst" / "inference.py").read_text(encoding="utf-8")
    return set(re.findall(r"[\"'](--[a-z][a-z0-9-]*)[\"']", source)) | {"--help"}


def _commands_in(page: Path):
    """(command, the text after it on its line) for every console script and script named
    in the page's code, with a ``make`` target's ``ARGS`` left out."""
    names = "|".join(sorted(map(re.escape, console_scripts()), key=len, reverse=True))
    call = re.compile(rf"(?<![\w-])({names}|scripts/[\w/]+\.py|python -m (?:fastnst\.\w+))\b")
    text = page.read_text(encoding="utf-8")
    code = re.findall(r"```.*?```", text, flags=re.S) + re.findall(r"`[^`\n]+`", text)
    for block in code:
        for line in block.replace("\\\n", " ").splitlines():
            for match in call.finditer(line):
                rest = line[match.end() :]
                end = COMMAND_END.search(rest)
                yield match.group(1), rest[: end.start()] if end else rest


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_documented_option_exists(page):
    unknown = []
    for command, rest in _commands_in(page):
        if command.startswith("python -m"):
            continue
        known = _script_options(command) if command.startswith("scripts/") else None
        known = known if known is not None else _command_options(command)
        for option in OPTION.findall(rest):
            if option not in known:
                unknown.append(f"{command} {option}")
    assert not unknown, sorted(set(unknown))


@cache
def _config(name: str, groups: tuple[str, ...] = ()):
    """The config ``name`` composed with the config-group choices of the command."""
    from hydra import compose, initialize_config_dir

    from fastnst.jobs import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(name, overrides=list(groups))


def _is_setting(cfg, key: str) -> bool:
    from omegaconf import OmegaConf

    from fastnst.jobs import CONF_DIR

    if (CONF_DIR / key).is_dir():  # a config group: style=wave
        return True
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return node is not None and OmegaConf.is_dict(node) and leaf in node


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_documented_setting_is_a_config_key(page):
    unknown = []
    for command, rest in _commands_in(page):
        entry = command.removeprefix("python -m ")
        if entry not in HYDRA_ENTRIES:
            continue
        from fastnst.jobs import CONF_DIR

        settings = []
        for token in rest.replace('"', " ").replace("'", " ").split():
            key = token.split("=", 1)[0]
            if "=" not in token or key.startswith(("+", "~", "hydra.", "-")) or not key:
                continue
            if re.fullmatch(r"[a-z_][a-z0-9_.]*", key):  # not a placeholder or shell text
                settings.append((key, token.split("=", 1)[1]))
        groups = tuple(
            f"{key}={value}"
            for key, value in settings
            if (CONF_DIR / key).is_dir() and (CONF_DIR / key / f"{value}.yaml").is_file()
        )
        cfg = _config(HYDRA_ENTRIES[entry], groups)
        unknown += [f"{entry} {key}" for key, _ in settings if not _is_setting(cfg, key)]
    assert not unknown, sorted(set(unknown))


def test_the_checks_catch_what_they_look_for(tmp_path):
    """A broken link, a missing path, an unknown option and an unknown setting each fail."""
    page = tmp_path / "page.md"
    page.write_text(
        "[gone](nowhere.md) [anchor](#nope) scripts/no_such_script.py\n"
        "`fastnst-stylize m photo.jpg --no-such-option`\n"
        "`python -m fastnst.train loss.no_such_key=1 style=wave trainer.max_steps=3`\n"
    )
    with pytest.raises(AssertionError, match="nowhere.md.*no such file.*#nope"):
        test_every_link_resolves(page)
    with pytest.raises(AssertionError, match="scripts/no_such_script.py"):
        test_every_scripts_and_docs_path_exists(page)
    with pytest.raises(AssertionError, match="--no-such-option"):
        test_every_documented_option_exists(page)
    with pytest.raises(AssertionError, match=r"loss\.no_such_key'\]"):
        test_every_documented_setting_is_a_config_key(page)


def test_the_development_page_lists_every_module():
    tree = (REPO / "docs" / "development.md").read_text(encoding="utf-8")
    modules = [p for p in (REPO / "fastnst").rglob("*.py") if p.name != "__init__.py"]
    missing = [str(p.relative_to(REPO)) for p in modules if f" {p.name} " not in tree]
    assert not missing, missing
