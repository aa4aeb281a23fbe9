"""The README and docs/*.md say what is true: every relative link and picture exists, every picture shown is
made by a committed script or says (`<!-- made by: ... -->`) what made it, every
`python -m ganstudy.train` and `python -m ganstudy.sweep` command in a ```bash block composes, and every
transcript of a refused command (a ```text block: `$ python -m ganstudy.train ...` then `error: ...`) is
refused with the line shown; docs/sweeps.md's confirm transcript is the committed confirm.json as confirm prints
it today. Fast: no training, no TensorFlow (composing a config and loading a sweep file
import neither)."""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# One pytest-xdist worker for the module, so each distinct sweep file is loaded (seconds) once.
pytestmark = pytest.mark.xdist_group("test_docs")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --- Markdown: fenced blocks, links, headings -------------------------------------------------------------

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)")


@dataclass
class Block:
    page: Path
    line: int          # 1-based line of the first line inside the fence
    lang: str
    lines: list[str]


def split_page(page: Path) -> tuple[list[tuple[int, str]], list[Block]]:
    """(the lines outside fenced code blocks with their numbers, the fenced blocks)."""
    prose, blocks, block, fence = [], [], None, ""
    for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line)
        if block is None:
            if m:
                fence, block = m.group(1), Block(page, n + 1, m.group(2).lower(), [])
            else:
                prose.append((n, line))
        elif m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not m.group(2):
            blocks.append(block)
            block = None
        else:
            block.lines.append(line)
    assert block is None, f"{rel(page)}:{block.line - 1}: a fenced code block is never closed"
    return prose, blocks


INLINE_CODE = re.compile(r"(`+).*?\1")
MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
REF_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
HTML_SRC = re.compile(r"<(?:img|source)\b[^>]*?\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
HTML_HREF = re.compile(r"<a\b[^>]*?\bhref\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)   # http:, https:, mailto:, ...


def links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link and image and every HTML <img src>/<a href> outside code."""
    prose, _ = split_page(page)
    found = []
    for n, line in prose:
        text = INLINE_CODE.sub("", line)
        for pattern in (MD_LINK, REF_LINK, HTML_SRC, HTML_HREF):
            found += [(n, m.group(1)) for m in pattern.finditer(text)]
    return found


def local_links(page: Path) -> list[tuple[int, Path, str]]:
    """(line, the file a relative link names, its #fragment or '') for every link that is not external or a
    pure #anchor."""
    out = []
    for n, target in links(page):
        if not target or EXTERNAL.match(target) or target.startswith("#"):
            continue
        path, _, fragment = target.partition("#")
        path = path.split("?", 1)[0]
        base = ROOT if path.startswith("/") else page.parent
        out.append((n, (base / path.lstrip("/")).resolve(), fragment))
    return out


def slugs(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens, -1, -2, ...
    for repeats."""
    prose, _ = split_page(page)
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose:
        m = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))   # a link in a heading: its text
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out


# --- (a) links and pictures ------------------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_and_pictures_exist(page):
    broken = [f"{rel(page)}:{n}: {target}" for n, target, _ in local_links(page)
              if not target.exists() or ROOT not in (target, *target.parents)]
    assert not broken, "links or pictures that name no file in the repository:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_anchors_name_headings(page):
    """`page.md#heading` and `#heading` links name a heading that exists (GitHub's anchor for it)."""
    broken = []
    for n, target in links(page):
        if EXTERNAL.match(target) or "#" not in target:
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if file.suffix == ".md" and file.exists() and fragment not in slugs(file):
            broken.append(f"{rel(page)}:{n}: {target}")
    assert not broken, "anchors that name no heading:\n" + "\n".join(broken)


def test_the_link_check_sees_links():
    """The checks above are not vacuous: the README links the docs pages and shows the study's picture."""
    readme = {target for _, target, _ in local_links(ROOT / "README.md")}
    for page in ("training", "metrics", "sweeps", "study", "mlflow", "scale-out", "performance", "architecture",
                 "faq", "versions", "reference", "glossary"):
        assert ROOT / "docs" / f"{page}.md" in readme, f"README.md does not link docs/{page}.md"
    for name in ("docs/study/arms_epoch20.png", "LICENSE", "NOTICE", "CHANGELOG.md"):
        assert ROOT / name in readme, f"README.md does not link {name}"


# --- every picture shown says where it came from ----------------------------------------------------------------
#
# A picture a page shows (a Markdown image or an HTML <img>) is accounted for when a committed script writes a file
# of its name (the name as a string in docs/*.py, benchmarks/*.py or src/ganstudy/), or when a comment on its line,
# or alone on the next, says what made it and from what, naming an existing script or module:
#     ![caption](study/slice.png) <!-- made by: `python docs/study_figures.py ...`, from ... -->
# Every such comment must name one that exists, whether or not the file name alone would do.

MD_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
HTML_IMG = re.compile(r"<img\b[^>]*?\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
MADE_BY = re.compile(r"<!--\s*made by:\s*(.*?)\s*-->")
MAKER = re.compile(r"\bpython3?\s+(?:-m\s+(ganstudy(?:\.\w+)+)|((?:docs|benchmarks|src)/[\w/.-]+\.py))")
MAKER_SCRIPTS = [*sorted((ROOT / "docs").glob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py")),
                 *sorted((ROOT / "src" / "ganstudy").rglob("*.py"))]


def shown_pictures(page: Path) -> list[tuple[int, str, str | None]]:
    """(line, picture, its made-by comment or None) for every picture the page shows, outside code."""
    prose, _ = split_page(page)
    text = dict(prose)
    out = []
    for n, line in prose:
        bare = INLINE_CODE.sub("", line)
        for pattern in (MD_IMAGE, HTML_IMG):
            for m in pattern.finditer(bare):
                here = MADE_BY.search(line[m.end():]) if pattern is MD_IMAGE else MADE_BY.search(line)
                after = text.get(n + 1, "").strip()
                below = MADE_BY.fullmatch(after)
                out.append((n, m.group(1), (here or below).group(1) if here or below else None))
    return out


def maker(made_by: str) -> Path | None:
    """The committed script or module a made-by comment names (None: it names none that exists)."""
    m = MAKER.search(made_by)
    if not m:
        return None
    if m.group(2):
        path = ROOT / m.group(2)
    else:
        module = ROOT / "src" / Path(*m.group(1).split("."))
        path = module.with_suffix(".py") if module.with_suffix(".py").exists() else module / "__main__.py"
    return path if path.is_file() else None


def written_by_a_script(picture: str) -> Path | None:
    name = re.escape(Path(picture).name)
    return next((script for script in MAKER_SCRIPTS
                 if re.search(rf"[\"'/]{name}[\"']", script.read_text(encoding="utf-8"))), None)


def unaccounted_pictures(page: Path) -> list[str]:
    where = rel(page) if ROOT in page.parents else page.name
    problems = []
    for n, picture, made_by in shown_pictures(page):
        if made_by is not None and maker(made_by) is None:
            problems.append(f"{where}:{n}: {picture}: its made-by comment names no committed script or module "
                            f"(`python docs/X.py`, `python benchmarks/X.py`, `python -m ganstudy.X`): {made_by}")
        elif made_by is None and written_by_a_script(picture) is None:
            problems.append(f"{where}:{n}: {picture}: no committed script writes it and no "
                            "`<!-- made by: ... -->` comment says where it came from")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_picture_is_made_by_a_committed_script_or_says_where_it_came_from(page):
    problems = unaccounted_pictures(page)
    assert not problems, "\n".join(problems)


def test_the_picture_check_sees_pictures_and_can_fail(tmp_path):
    """Not vacuous: it finds the docs' pictures and their comments, and refuses a picture with neither a
    script that writes it nor a comment, and a comment that names no script."""
    study = {picture: made_by for _, picture, made_by in shown_pictures(ROOT / "docs" / "study.md")}
    assert "study/slice.png" in study and maker(study["study/slice.png"]) == ROOT / "docs" / "study_figures.py"
    mlflow_page = {picture: made_by for _, picture, made_by in shown_pictures(ROOT / "docs" / "mlflow.md")}
    assert maker(mlflow_page["ui_run_page.png"]) == ROOT / "docs" / "ui_screenshots.py"
    assert written_by_a_script("docs/ui_run_page.png") == ROOT / "docs" / "ui_screenshots.py"
    page = tmp_path / "page.md"
    page.write_text("![a plot](study/slice.png) <!-- made by: `python docs/study_figures.py --out docs/study` -->\n\n"
                    "![a screenshot](shot_of_my_desk.png)\n\n"
                    '<img src="ui_run_page.png" width="500">\n<!-- made by: `python -m ganstudy.detection` -->\n\n'
                    "![another](mystery.png)\n<!-- made by: hand, in GIMP -->\n\n"
                    "![a third](gone.png) <!-- made by: `python docs/no_such_script.py` -->\n\n"
                    "```text\n![in a code block](not_a_picture.png)\n```\n", encoding="utf-8")
    found = {picture: made_by for _, picture, made_by in shown_pictures(page)}
    assert set(found) == {"study/slice.png", "shot_of_my_desk.png", "ui_run_page.png", "mystery.png", "gone.png"}
    assert found["ui_run_page.png"] == "`python -m ganstudy.detection`"
    problems = unaccounted_pictures(page)
    assert [p.split(": ")[1] for p in problems] == ["shot_of_my_desk.png", "mystery.png", "gone.png"], problems


def test_every_docs_page_is_reachable_from_the_readme():
    reachable, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in reachable:
            continue
        reachable.add(page)
        todo += [t for _, t, _ in local_links(page) if t.suffix == ".md" and t.exists()]
    assert not [rel(p) for p in PAGES if p not in reachable]


def test_readme_names_every_command():
    """Every `python -m ganstudy.VERB` that exists (a module with a __main__ block) is in the README."""
    verbs = sorted(p.stem for p in (ROOT / "src" / "ganstudy").glob("*.py")
                   if re.search(r"^if __name__ == [\"']__main__[\"']", p.read_text(encoding="utf-8"), re.M))
    assert {"train", "sweep", "sample", "detect", "classifier"} <= set(verbs)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert not [v for v in verbs if f"python -m ganstudy.{v}" not in readme]


# --- (b), (c) the commands in ```bash blocks compose --------------------------------------------------------

@dataclass
class Command:
    where: str         # page:line
    verb: str          # train, sweep, ...
    args: list[str]
    error: str | None = None   # a transcript's `error: ...` line after the command, without `error: `

    def __str__(self):
        return self.where


def shell_commands(text: str) -> list[list[str]]:
    """The simple commands of one logical shell line: `#` comments dropped, split at && || ; |."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, current = [], []
    for token in lexer:
        if token and set(token) <= set("&|;<>()"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    return [c for c in [*commands, current] if c]


def ganstudy_command(words: list[str], where: str) -> Command | None:
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):   # VAR=value before the command
        words = words[1:]
    if len(words) >= 3 and re.fullmatch(r"python(3(\.\d+)?)?", words[0]) and words[1] == "-m" \
            and words[2].startswith("ganstudy."):
        return Command(where, words[2].split(".", 1)[1], words[3:])
    return None


def logical_lines(block: Block):
    """(line number, text) with backslash continuations joined."""
    pending, start = "", None
    for i, line in enumerate(block.lines):
        if start is None:
            start = block.line + i
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending, start = "", None
    if pending:
        yield start, pending


def bash_commands() -> list[Command]:
    out = []
    for page in PAGES:
        for block in split_page(page)[1]:
            if block.lang not in ("bash", "sh", "shell", "console"):
                continue
            for n, line in logical_lines(block):
                for words in shell_commands(line):
                    if (cmd := ganstudy_command(words, f"{rel(page)}:{n}")) is not None:
                        out.append(cmd)
    return out


def transcripts() -> list[Command]:
    """`$ python -m ganstudy.VERB ...` lines in ```text blocks, with the `error: ...` line that follows, if any."""
    out = []
    for page in PAGES:
        for block in split_page(page)[1]:
            if block.lang not in ("text", ""):
                continue
            for i, line in enumerate(block.lines):
                if not line.startswith("$ "):
                    continue
                for words in shell_commands(line[2:]):
                    if (cmd := ganstudy_command(words, f"{rel(page)}:{block.line + i}")) is not None:
                        after = block.lines[i + 1] if i + 1 < len(block.lines) else ""
                        cmd.error = after[len("error: "):] if after.startswith("error: ") else None
                        out.append(cmd)
    return out


BASH = bash_commands()
TRANSCRIPTS = transcripts()

# Words in the docs' commands that stand for something the reader supplies, not something to compose.
TRAIN_FLAGS = {"--cfg": 1, "--help": 0, "-h": 0, "-m": 0, "--multirun": 0, "--hydra-help": 0,  # flag: values it takes
               "--config-dir": 1, "--resolve": 0}
PLACEHOLDER = re.compile(r"^\[.*\]$|…|\.\.\.|^RUN$|^FILES$")     # [overrides], 3c0d5e…, RUN
RUN_KEYS = ("resume", "run_dir")          # they name runs and folders that do not exist here
PLACEHOLDER_HOSTS = ("db-host", "tracking-host")
EXAMPLE_SWEEP_FILES = {"my_study.yaml"}   # "a file of your own": shown, not shipped


def train_overrides(cmd: Command) -> list[str]:
    overrides, args = [], list(cmd.args)
    while args:
        word = args.pop(0)
        if word in TRAIN_FLAGS:
            del args[:TRAIN_FLAGS[word]]
        elif word.startswith("-"):
            pytest.fail(f"{cmd.where}: unknown flag {word} (add it to TRAIN_FLAGS if the command takes it)")
        elif "=" not in word:
            assert PLACEHOLDER.search(word), f"{cmd.where}: {word!r} is neither key=value nor a known placeholder"
        elif word.lstrip("+~").split("=", 1)[0] not in RUN_KEYS:
            overrides.append(os.path.expandvars(word))   # the shell expands $HOME before Hydra sees it
    return overrides


def sweep_arguments(cmd: Command) -> tuple[str, list[str]] | None:
    """(sweep name, overrides) as `python -m ganstudy.sweep` parses them; None for an example file."""
    name, overrides = "default", []
    for word in cmd.args:
        if word in ("--help", "-h", "--cfg"):
            continue
        assert "=" in word, f"{cmd.where}: {word!r}: the sweep takes key=value arguments only"
        key, value = word.split("=", 1)
        if key == "sweep":
            name = value
        elif key == "confirm":
            continue   # what happens after the study, not part of the sweep file's checks
        elif key == "storage" and any(f"@{host}" in value or f"//{host}" in value for host in PLACEHOLDER_HOSTS):
            continue   # a server the reader runs
        else:
            overrides.append(word)
    return None if name in EXAMPLE_SWEEP_FILES else (name, overrides)


_LOADED: set[tuple[str, tuple[str, ...]]] = set()


def load_sweep(name: str, overrides: list[str]) -> None:
    """sweep_spec.load, once per distinct (name, overrides): a load composes a config per parameter, which
    takes seconds, and many commands differ only in what the checks ignore."""
    from ganstudy import sweep_spec

    if (name, tuple(overrides)) not in _LOADED:
        sweep_spec.load(name, overrides)
        _LOADED.add((name, tuple(overrides)))


def compose_and_validate(overrides: list[str]):
    from ganstudy.config import compose, validate

    cfg = compose(overrides + ["run_dir=unused"])
    validate(cfg)
    return cfg


def test_the_command_checks_see_commands():
    """The parametrized checks below are not vacuous."""
    verbs = [c.verb for c in BASH]
    assert verbs.count("train") >= 10 and verbs.count("sweep") >= 5, verbs
    assert [c.where for c in BASH if c.where.startswith("README.md")], "no ganstudy command in the README's bash blocks"
    assert sum(1 for c in TRANSCRIPTS if c.verb == "train" and c.error) >= 3


def multirun_jobs(overrides: list[str]) -> list[list[str]]:
    """A multirun's jobs, as Hydra's basic sweeper makes them: one per combination of the comma-separated values."""
    import itertools

    def values(override: str) -> list[str]:
        key, _, value = override.partition("=")
        return [f"{key}={v}" for v in value.split(",")] if "," in value and "[" not in value else [override]

    return [list(job) for job in itertools.product(*map(values, overrides))]


@pytest.mark.parametrize("cmd", [c for c in BASH if c.verb == "train"], ids=str)
def test_train_commands_compose(cmd):
    if "--config-dir" in cmd.args:
        pytest.skip(f"{cmd.where}: an experiment in a folder of the reader's (tests/test_sweep.py composes one)")
    overrides = train_overrides(cmd)
    for job in multirun_jobs(overrides) if {"-m", "--multirun"} & set(cmd.args) else [overrides]:
        compose_and_validate(job)


@pytest.mark.parametrize("cmd", [c for c in BASH if c.verb == "sweep"], ids=str)
def test_sweep_commands_load(cmd):
    if (parsed := sweep_arguments(cmd)) is None:
        pytest.skip(f"{cmd.where}: an example sweep file")
    load_sweep(*parsed)


@pytest.mark.parametrize("cmd", [c for c in TRANSCRIPTS if c.verb in ("train", "sweep")], ids=str)
def test_transcripts_show_what_the_command_does(cmd):
    """A transcript's `error: KEY=VALUE: ...` line is the refusal the command gives (the settings are checked
    before any work); one with no error line, or an error from the run itself (`error: run ... diverged`),
    shows settings that are valid."""
    from ganstudy.config import ConfigError

    refused = cmd.error is not None and not cmd.error.startswith("run ")
    check = (lambda: compose_and_validate(train_overrides(cmd))) if cmd.verb == "train" \
        else (lambda: load_sweep(*sweep_arguments(cmd)))
    if refused:
        with pytest.raises(ConfigError) as err:
            check()
        assert str(err.value) == cmd.error
    else:
        check()


# --- docs/study_figures.py: never writes into docs/ unasked, and says what it needs ----------------------------

def study_figures():
    import importlib.util

    spec = importlib.util.spec_from_file_location("study_figures", ROOT / "docs" / "study_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_figures_write_outside_docs_unless_told():
    assert "docs" not in study_figures().parse([]).out.parts


@pytest.mark.parametrize("storage", ["empty", "committed"])
def test_study_figures_without_the_studys_runs_is_one_line_and_exit_2(storage, tmp_path, store, capsys):
    """The committed storage holds the study, not its MLflow runs: the script says so and writes nothing."""
    import shutil

    from conftest import call_main

    if storage == "committed":
        shutil.copy(ROOT / "docs" / "study" / "ganstudy-default.optuna.db", tmp_path / "optuna.db")
    args = ["--storage", f"sqlite:///{tmp_path}/optuna.db", "--tracking-uri", store, "--out", str(tmp_path / "out")]
    code, out, err = call_main(study_figures().main, args, capsys)
    if storage == "empty":
        expected = f"error: --study ganstudy-default: no such study in sqlite:///{tmp_path}/optuna.db"
    else:
        import optuna

        parent = optuna.load_study(study_name="ganstudy-default", storage=args[1]).user_attrs["mlflow_parent_run_id"]
        expected = f"error: --study ganstudy-default: its MLflow run {parent} is not in {store};"
    assert (code, out) == (2, "") and len(err.splitlines()) == 1 and err.startswith(expected), err
    assert not (tmp_path / "out").exists()


# --- docs/sweeps.md's confirm transcript is the default study's, as today's code prints it ---------------------

def test_the_confirm_transcript_is_the_committed_confirm_json_as_printed_today(capsys):
    """The tables between the `…` lines of the `$ python -m ganstudy.sweep confirm=true` transcript are what
    confirm prints (comparison_view.print_table) from docs/study/confirm.json, restated as confirm restates an
    older summary (stats.against_reference: today's interval, n): a new column, a changed interval or another
    study's numbers make it fail."""
    import json

    from omegaconf import OmegaConf

    from ganstudy.comparison_view import print_table
    from ganstudy.stats import against_reference
    from ganstudy.study_results import comparisons

    [block] = [b for b in split_page(ROOT / "docs" / "sweeps.md")[1]
               if b.lang == "text" and b.lines and b.lines[0].strip() == "$ python -m ganstudy.sweep confirm=true"]
    first, last = block.lines.index("…"), len(block.lines) - 1 - block.lines[::-1].index("…")
    shown = block.lines[first + 1:last]
    results = json.loads((ROOT / "docs" / "study" / "confirm.json").read_text(encoding="utf-8"))
    spec = OmegaConf.create({"objective": "fid_best", "direction": "minimize"})
    for name, summary in comparisons(results).items():
        print_table(against_reference(summary), spec, name, results.get("time_budget"))
    printed = [line.rstrip() for line in capsys.readouterr().out.strip("\n").splitlines()]
    assert len(comparisons(results)) == 2 and shown == printed
