"""The docs cannot drift from the code: every command in README.md and docs/*.md is checked.

Commands are the lines of fenced ```bash / ```sh blocks (``\\`` continuations joined, ``&&``, ``||``,
``;`` and ``|`` split into separate commands, comments dropped) and inline code spans of the prose
that start like a command (``make ...``, ``python ...``, ``bash ...``, ``VAR=x bash ...``). Each is
checked cheaply, nothing is trained and no data is read:

* ``make X [VAR=v]``: X is a target of the Makefile; VAR is a Makefile variable or read by the bin/
  scripts its recipe runs;
* ``bash bin/X.sh ARGS`` (with ``VAR=v`` before it): the script exists, every VAR is read by it (or by
  the bin/ scripts it calls), and ARGS are what the script passes on: src/train.py arguments are
  resolved with cellpipe.core.config.load_config on the config(s) the script trains with (so an
  unknown key fails naming the key), bin/grid.sh's are parsed by src/grid.py run's parser;
* ``python src/X.py [sub] ARGS`` and ``python bench/X.py ARGS``: the script exists; a fire CLI's
  arguments are bound to the signature of the function (or subcommand) it runs (unknown flags,
  missing required arguments and literal values of the wrong type fail); an argparse CLI parses them
  with its own parser (intercepted after parsing, nothing runs); src/train.py's ``--section/key=value``
  overrides and ``--overlay`` files go through load_config;
* ``python3 -m venv`` / ``pip install``: the same step is in the Makefile's install recipe;
* ``python -m pytest`` / ``ruff check``: the paths exist;
* any token naming a file under configs/, src/, bin/, bench/, tests/ or docker/ exists.

Conventions the checker understands: ``[--flag value]`` and ``[--a x | --b y]`` mark optional flags
(each is checked), a bare ``...`` stands for more arguments, ALL-CAPS words (DATA, OUT) and ``$VARS``
are placeholders (a single capital, N, also for a number). A command the checker does not understand
fails, naming its file and line, unless ALLOWED below names it with a reason; REJECTED holds the
commands a page shows on purpose as wrong, with the error they must get. Inline spans are mentions,
not invocations: missing required arguments are accepted there (unknown ones are not).

Besides: links between the pages resolve (files and #anchors); backticked repository paths,
``cellpipe.x.y`` names, ``section/key`` config keys (in configs/base.yml, a data overlay or a stage
file) and ``source_params/x`` settings (a parameter of some input adapter) in the prose exist; every
page starts with its commands; the README stays a front page.
"""
import argparse
import ast
import contextlib
import importlib
import importlib.util
import inspect
import io
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 150

# Commands that are shown but have nothing of ours to check: exact command text -> reason.
ALLOWED = {
    "tensorboard --logdir /logs": "third-party viewer of the TensorBoard events Catalyst writes; no project code",
    "mlflow ui --backend-store-uri sqlite:///mlflow.db": "MLflow's own viewer of the store the runs log to; "
    "tests/scripts/test_sweep.py reads that store back through MLflow's client",
    "curl -F image=@figure.png http://127.0.0.1:8000/predict": "an HTTP client of the service; the answers to "
    "these requests are tested against a real server in tests/serve/test_serve.py",
    "curl -F channel=@s1_w1.png -F channel=@s1_w2.png -F channel=@s1_w3.png http://127.0.0.1:8000/predict":
    "the same, one file per channel (tests/serve/test_serve.py)",
}

# Commands shown on purpose as wrong (the page shows the error they get): command text -> the error the
# checker must find, so the example stays wrong in the way the page says.
REJECTED = {
    "python src/make_demo_data.py --out_dir /tmp/x --cell_types HEPG2": "flag --cell_types: expected an integer",
}

# `make help` lists the targets whose rule has a `## description`; its grep pattern does not match a rule
# naming several targets, so these are missing from its list (docs/development.md says so).
KNOWN_UNLISTED = set()  # make targets the docs show that `make help` leaves out (none)

CMD_FENCES = {"bash", "sh", "shell"}
PYTHONS = {"python", "python3", ".venv/bin/python", "$PYTHON", '"$PYTHON"'}
OPERATORS = {"&&", "||", ";", "|", "&"}
REPO_DIRS = ("configs/", "src/", "bin/", "bench/", "tests/", "docker/", ".ci/")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PLACEHOLDER_RE = re.compile(r"^[A-Z]$")  # a number placeholder: --min_samples N
INLINE_START = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:make|bash|python3?|\.venv/bin/\w+|pip)\s+\S")


# ---------------------------------------------------------------------------- extraction
@dataclass(frozen=True)
class Command:
    file: str   # relative to the repo
    line: int
    text: str
    inline: bool

    def where(self):
        return f"{self.file}:{self.line}: {self.text}"


def extract(path: Path):
    """The commands of one markdown file: fenced bash/sh lines and command-like inline spans."""
    rel = str(path.relative_to(REPO))
    lines = path.read_text().splitlines()
    out, fence, pending, start = [], None, "", 0
    for no, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = stripped[3:].strip().lower() if fence is None else None
            continue
        if fence in CMD_FENCES:
            if not pending:
                start = no
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            text = (pending + stripped).strip()
            pending = ""
            if text and not text.startswith("#"):
                out.append(Command(rel, start, text, inline=False))
        elif fence is None:
            for span in re.findall(r"`([^`]+)`", line):
                if INLINE_START.match(span):
                    out.append(Command(rel, no, span.strip(), inline=True))
    return out


ALL_COMMANDS = [c for f in DOC_FILES for c in extract(f)]


def split_commands(text):
    """Shell words of one logical line, split at operators, comments and placeholder brackets removed."""
    # [--flag v | --other w] -> --flag v --other w (optional flags are checked too)
    text = re.sub(r"\[(\s*--[^\[\]]*)\]", lambda m: m.group(1).replace(" | ", " "), text)
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = ""
    words = []
    for w in lexer:
        if w.startswith("#"):
            break
        words.append(w)
    commands, current = [], []
    for w in words:
        if w in OPERATORS:
            commands.append(current)
            current = []
        else:
            current.append(w)
    commands.append(current)
    return [c for c in commands if c]


# ---------------------------------------------------------------------------- repo facts
def makefile():
    """(targets -> recipe text, variable names) of the Makefile."""
    text = (REPO / "Makefile").read_text()
    targets, current = {}, None
    for line in text.splitlines():
        if line.startswith("\t") and current is not None:
            for t in current:
                targets[t] += line + "\n"
            continue
        m = re.match(r"^([^\s#:=][^:=]*?)\s*:(?!=)\s*([^=]*)$", line.split("##")[0].rstrip())
        if m and not line.startswith("."):
            current = m.group(1).split()
            for t in current:
                targets.setdefault(t, "")
                # prerequisites' recipes count too (demo: install -> .installed)
                targets[t] += " ".join(m.group(2).split()) + "\n"
        elif line.strip() and not line.startswith("\t"):
            current = None
    variables = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)\s*[?:+]?=", text, re.M))
    variables |= set(re.findall(r"\$\((\w+)\)", text))
    return targets, variables


TARGETS, MAKE_VARS = makefile()


def script_closure(script: str):
    """script and every bin/ script it runs (by path or via $(dirname "$0")), transitively."""
    seen, todo = [], [script]
    while todo:
        s = todo.pop()
        if s in seen or not (REPO / s).is_file():
            continue
        seen.append(s)
        text = (REPO / s).read_text()
        todo += re.findall(r"\bbin/\w+\.sh", text)
        todo += ["bin/" + n for n in re.findall(r'\$\(dirname "\$0"\)/(\w+\.sh)', text)]
    return seen


def reads_var(scripts, name):
    return any(re.search(rf"\$\{{?{name}\b", (REPO / s).read_text()) for s in scripts)


# ---------------------------------------------------------------------------- checks
class DocError(Exception):
    pass


def check_paths(words):
    for w in words:
        value = w.split("=", 1)[1] if w.startswith("--") and "=" in w else w
        if value.startswith(REPO_DIRS) and not re.search(r"[$*{<\[]", value):
            if not (REPO / value.split("::")[0]).exists():
                raise DocError(f"no such file in the repository: {value}")


def check_make(words, env):
    targets = []
    for w in words[1:]:
        if ENV_RE.match(w):
            env.append(w)
        elif w.startswith("-"):
            raise DocError(f"make option {w!r} is not understood by the doc checker")
        else:
            targets.append(w)
    for t in targets or [next(iter(TARGETS))]:  # no target: the Makefile's first
        if t not in TARGETS:
            raise DocError(f"make target '{t}' is not in the Makefile (targets: {', '.join(sorted(TARGETS))})")
    scripts = []
    for t in targets:
        recipe = TARGETS[t]
        for pre in recipe.split("\n")[0].split():  # prerequisites' recipes
            recipe += TARGETS.get(pre, "")
        for s in re.findall(r"\bbin/\w+\.sh", recipe):
            scripts += script_closure(s)
    for assignment in env:
        name = assignment.split("=", 1)[0]
        if name not in MAKE_VARS and not reads_var(scripts, name):
            raise DocError(f"variable {name} is neither a Makefile variable nor read by {scripts or 'the recipe'}")


def check_install_step(words):
    """A manual install step must be a line of a Makefile recipe (the install rule's)."""
    recipe = "".join(TARGETS.values())
    recipe = recipe.replace("$(PIP)", "pip").replace("$(PYTHON_SYS)", "python3").replace("$(VENV)", ".venv")
    steps = [shlex.split(re.sub(r"#.*", "", line).replace("-q ", "")) for line in recipe.splitlines()
             if re.search(r"pip install|-m venv", line)]
    wanted = [w for w in words if w != "-q"]
    wanted[0] = "pip" if wanted[0].endswith("pip") else wanted[0]
    if not any(s[-len(wanted):] == wanted for s in steps if s):
        raise DocError(f"{' '.join(words)!r} is not a step of the Makefile's install recipe")


# bin/ scripts and where their arguments go: (kind, configs they train with)
BIN_ARGS = {
    "bin/train.sh": ("train", ["configs/config.yml"]),
    "bin/train_control.sh": ("train", ["configs/config_control.yml"]),
    "bin/train_pseudo.sh": ("train", ["configs/config_pseudo.yml"]),
    "bin/train_pseudo_rounds.sh": ("train", ["configs/config_pseudo.yml"]),
    "bin/flow.sh": ("train", ["configs/config.yml", "configs/config_pseudo.yml"]),
    "bin/train_classify.sh": ("train", ["configs/classify.yml"]),
    "bin/grid.sh": ("grid", []),
    "bin/sweep.sh": ("sweep", []),
    "bin/demo.sh": ("none", []),
    "bin/demo_classify.sh": ("none", []),
    "bin/demo_profile.sh": ("train", ["configs/config.yml"]),
    ".ci/run": ("none", []),
}
CONFIG_ENV = {"bin/train.sh": "CONFIG", "bin/train_control.sh": "CONFIG", "bin/train_pseudo.sh": "PSEUDO_CONFIG",
              "bin/train_pseudo_rounds.sh": "PSEUDO_CONFIG"}


def check_bash(words, env, inline):
    if len(words) < 2:
        raise DocError("bash without a script")
    script = words[1]
    if not (REPO / script).is_file():
        raise DocError(f"no such script: {script}")
    if script not in BIN_ARGS:
        raise DocError(f"the doc checker does not know where {script}'s arguments go (add it to BIN_ARGS)")
    closure = script_closure(script)
    env_values = dict(e.split("=", 1) for e in env)
    for name in env_values:
        if not reads_var(closure, name):
            raise DocError(f"{name} is not read by {', '.join(closure)}")
    kind, configs = BIN_ARGS[script]
    for config in configs:  # the table above must stay true to the scripts
        if not any(config in (REPO / s).read_text() for s in closure):
            raise DocError(f"{script} no longer trains with {config} (update BIN_ARGS in tests/scripts/test_docs.py)")
    args = [w for w in words[2:] if w != "..."]
    if kind == "none":
        if args:
            raise DocError(f"{script} takes no arguments, got {args}")
    elif kind == "sweep":  # bin/sweep.sh passes its arguments to src/sweep.py
        check_python(["python", "src/sweep.py", env_values.get("SWEEP", "configs/sweep/manifest.yml"),
                      "--study_dir", "STUDY", *args], inline)
    elif kind == "grid":
        check_argparse("src/grid.py", ["run", "GRID", *args], inline)
        for config in ("configs/config.yml", "configs/config_pseudo.yml"):
            check_train_args(config, [], shlex.split(env_values.get("TRAIN_ARGS", "")))
    else:
        overlays = [env_values["OVERLAY"]] if env_values.get("OVERLAY") else []
        if script == "bin/demo_profile.sh":  # its run: the demo and tiny overlays
            overlays = ["configs/demo.yml", "configs/tiny.yml"]
        if script == "bin/train_classify.sh":
            source = env_values.get("SOURCE", "manifest")
            overlays.insert(0, env_values.get("DATA_CONFIG", f"configs/data/{source}.yml"))
        if script in CONFIG_ENV and env_values.get(CONFIG_ENV[script]):
            configs = [env_values[CONFIG_ENV[script]]]
        for config in configs:
            check_train_args(config, overlays, args)
        if env_values.get("PREDICT_ARGS"):
            check_python(["python", "src/inference.py", "predict-all", *shlex.split(env_values["PREDICT_ARGS"])],
                         inline=True)


def check_train_args(config, overlays, args):
    """src/train.py arguments (overlays and --section/key=value overrides) resolved against ``config``."""
    check_argparse("src/train.py", ["--config", config, "--logdir", "LOGDIR",
                                    *[a for o in overlays for a in ("--overlay", o)], *args], inline=False)


def load_script(rel):
    """(module, main-block call) of a python entry script: the call is ``('fire', component)`` or
    ``('argparse', module.main)``."""
    path = REPO / rel
    for d in (str(REPO / "src"), str(path.parent)):
        if d not in sys.path:
            sys.path.insert(0, d)
    try:
        if path.stem in sys.stdlib_module_names:  # src/profile.py: loaded from its file, under its own name
            spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(path.stem)
    except Exception as e:  # the script does not even import: the doc command cannot work
        raise DocError(f"importing {rel} failed: {type(e).__name__}: {e}") from None
    if Path(module.__file__).resolve() != path.resolve():
        raise DocError(f"importing {path.stem} found {module.__file__}, not {rel}")
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            for call in ast.walk(node):
                if isinstance(call, ast.Call) and ast.unparse(call.func) in ("cli.run", "fire.Fire"):
                    return module, ("fire", _component(module, call.args[0], rel))
            if "main(" in ast.unparse(node) and hasattr(module, "main") and "argparse" in vars(module):
                return module, ("argparse", module.main)
    raise DocError(f"{rel} has no fire or argparse entry point the doc checker recognises")


def _component(module, node, rel):
    """What a fire entry point runs: a function name, or a literal dict of subcommand -> function name."""
    if isinstance(node, ast.Name):
        return getattr(module, node.id)
    if isinstance(node, ast.Dict) and all(isinstance(k, ast.Constant) and isinstance(v, ast.Name)
                                          for k, v in zip(node.keys, node.values)):
        return {k.value: getattr(module, v.id) for k, v in zip(node.keys, node.values)}
    raise DocError(f"{rel}: the doc checker cannot read the fire component {ast.unparse(node)}")


class _Parsed(Exception):
    def __init__(self, result):
        super().__init__("parsed")
        self.result = result


@contextlib.contextmanager
def intercept_argparse():
    """Make the outermost parse_args / parse_known_args raise _Parsed with its result, so that a
    script's main() parses its arguments and stops there."""
    orig_known, orig_args = argparse.ArgumentParser.parse_known_args, argparse.ArgumentParser.parse_args
    depth = [0]

    def stopping(orig, always: bool):
        # parse_args calls parse_known_args: only the outermost call stops, parse_args always does
        def parse(self, args=None, namespace=None):
            depth[0] += 1
            try:
                result = orig(self, args, namespace)
            finally:
                depth[0] -= 1
            if always:
                raise _Parsed((result, []))
            if depth[0] == 0:
                raise _Parsed(result)
            return result
        return parse

    parse_known_args, parse_args = stopping(orig_known, False), stopping(orig_args, True)
    argparse.ArgumentParser.parse_known_args, argparse.ArgumentParser.parse_args = parse_known_args, parse_args
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_known_args, argparse.ArgumentParser.parse_args = orig_known, orig_args


def check_argparse(rel, args, inline):
    module, (kind, main) = load_script(rel)
    if kind != "argparse":
        raise DocError(f"{rel} is not an argparse script")
    err = io.StringIO()
    try:
        with intercept_argparse(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main(args)
        raise DocError(f"{rel} ran past its argument parsing")
    except SystemExit as e:
        if e.code in (0, None):  # --help
            return
        message = err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else str(e)
        if inline and "arguments are required" in message:
            return
        raise DocError(f"{rel}: {message}") from None
    except _Parsed as parsed:
        namespace, extra = parsed.result
    if rel == "src/train.py":
        from cellpipe.core.config import load_config
        from cellpipe.core.errors import ConfigError

        overlays = [str(REPO / o) for o in namespace.overlay if o]
        try:
            cfg = load_config(REPO / namespace.config, overlays, extra)
        except (ConfigError, FileNotFoundError) as e:
            raise DocError(f"config {namespace.config} + {namespace.overlay}: {e}") from None
        dp = cfg["data_params"]
        accepted = adapter_params(dp["source"])
        unknown = sorted(set(dp.get("source_params") or {}) - accepted) if accepted is not None else []
        if unknown:
            raise DocError(f"config {namespace.config} + {namespace.overlay}: source '{dp['source']}' takes no "
                           f"data_params/source_params {unknown}")
    elif extra:
        raise DocError(f"{rel}: unrecognised arguments {extra}")


def adapter_params(source):
    """The source_params an input adapter accepts: its constructor's own parameters (None: any, **kwargs)."""
    from cellpipe.sources import source_class

    try:
        params = inspect.signature(source_class(source).__init__).parameters
    except Exception as e:  # an unknown source name
        raise DocError(f"data_params/source '{source}': {e}") from None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return set(params) - {"self", "root", "rescale"}


def _expected_type(param):
    annotation = param.annotation
    if annotation in (int, float, bool):
        return annotation
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    if len(args) == 1 and args[0] in (int, float, bool):
        return args[0]
    if annotation is inspect.Parameter.empty and type(param.default) in (int, float, bool):
        return type(param.default)
    return None


def _check_value(name, param, value):
    kind = _expected_type(param)
    if kind is None or value is True or not isinstance(value, str) or "$" in value or PLACEHOLDER_RE.match(value):
        return
    if kind is bool:
        if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
            raise DocError(f"flag --{name}: expected true or false, got {value!r}")
        return
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    if isinstance(parsed, bool) or not isinstance(parsed, (int, float) if kind is float else int):
        raise DocError(f"flag --{name}: expected {'a number' if kind is float else 'an integer'}, got {value!r}")


def check_fire(rel, component, args, inline):
    if args[:1] in (["--help"], ["-h"]) or args[-2:] == ["--", "--help"]:
        return
    if isinstance(component, dict):
        if not args or args[0] not in component:
            raise DocError(f"{rel}: subcommand {args[0] if args else '(none)'!r} is not one of {sorted(component)}")
        func, args = component[args[0]], args[1:]
    else:
        func = component
    signature = inspect.signature(func)
    positional, flags, i = [], {}, 0
    while i < len(args):
        a = args[i]
        if a == "--":
            break
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            name = name.replace("-", "_")
            if not eq:
                if i + 1 < len(args) and not args[i + 1].startswith("--"):
                    value, i = args[i + 1], i + 1
                else:
                    value = True
            flags[name] = value
        elif a.startswith("-") and not re.match(r"^-\d", a):
            raise DocError(f"{rel}: short option {a!r} (fire takes --name)")
        else:
            positional.append(a)
        i += 1
    try:
        bound = (signature.bind_partial if inline else signature.bind)(*positional, **flags)
    except TypeError as e:
        raise DocError(f"{rel} {func.__name__}: {e}") from None
    for name, value in bound.arguments.items():
        param = signature.parameters[name]
        if param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            _check_value(name, param, value)


def check_python(words, inline):
    args = words[1:]
    if args[:2] == ["-m", "pytest"]:
        return
    if args[:2] == ["-m", "venv"]:
        return check_install_step(words)
    if not args or args[0].startswith("-"):
        raise DocError(f"python {' '.join(args)}: not understood by the doc checker")
    script, rest = args[0], [a for a in args[1:] if a != "..."]
    if not (REPO / script).is_file():
        raise DocError(f"no such script: {script}")
    _, (kind, component) = load_script(script)
    if kind == "fire":
        check_fire(script, component, rest, inline)
    else:
        check_argparse(script, rest, inline)


def check_command(words, inline):
    env = []
    while words and ENV_RE.match(words[0]):
        env.append(words[0])
        words = words[1:]
    if not words:
        raise DocError("only variable assignments")
    check_paths(words)
    program = words[0]
    if program == "make":
        return check_make(words, env)
    if program in ("bash", "sh"):
        return check_bash(words, env, inline)
    if env and not all(reads_var_anywhere(e.split("=", 1)[0]) for e in env):
        raise DocError(f"{env}: not read by any module of src/ or bench/")
    if program in PYTHONS:
        return check_python(words, inline)
    if program in ("pip", ".venv/bin/pip"):
        return check_install_step(words)
    if program in (".venv/bin/ruff", "ruff") and words[1:2] == ["check"]:
        return
    raise DocError(f"command '{program}' is not understood by the doc checker (add a check, or an ALLOWED entry)")


def reads_var_anywhere(name):
    """An environment variable a python command is shown with is named somewhere in src/ or bench/."""
    files = [*(REPO / "src").rglob("*.py"), *(REPO / "bench").rglob("*.py")]
    return any(re.search(rf"\b{name}\b", p.read_text()) for p in files)


# ---------------------------------------------------------------------------- tests
def _id(c: Command):
    return f"{c.file}:{c.line}:{c.text[:60]}"


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=[_id(c) for c in ALL_COMMANDS])
def test_doc_command(command: Command, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["doc-check"])
    for words in split_commands(command.text):
        text = " ".join(words)
        if text in ALLOWED:
            continue
        try:
            check_command(words, command.inline)
        except DocError as e:
            if text in REJECTED and REJECTED[text] in str(e):
                continue
            pytest.fail(f"{command.where()}\n  -> {text}\n  {e}", pytrace=False)
        if text in REJECTED:
            pytest.fail(f"{command.where()}\n  -> {text}\n  is shown as failing with {REJECTED[text]!r}, "
                        f"but the checker accepts it", pytrace=False)


def test_allow_list_is_used():
    shown = {" ".join(w) for c in ALL_COMMANDS for w in split_commands(c.text)}
    unused = sorted((set(ALLOWED) | set(REJECTED)) - shown)
    assert not unused, f"ALLOWED / REJECTED entries no doc shows any more (remove them): {unused}"


def test_every_page_has_commands():
    for path in DOC_FILES:
        assert any(not c.inline for c in extract(path)), f"{path.name}: no ```bash block"


def test_pages_start_with_their_commands():
    for path in DOC_FILES[1:]:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        assert lines[0].startswith("# "), f"{path.name}: first line must be the page title"
        assert lines[1].strip() == "```bash", f"{path.name}: the title must be followed by a ```bash block"


def test_readme_is_a_front_page():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"
    head = "\n".join(lines[:6])
    assert re.search(r"^make demo\b", head, re.M) and re.search(r"^make test\b", head, re.M), head
    text = "\n".join(lines)
    for page in DOC_FILES[1:]:
        assert f"(docs/{page.name}" in text, f"README.md does not link docs/{page.name}"


def _anchors(path: Path):
    slugs = set()
    for line in path.read_text().splitlines():
        m = re.match(r"^#+\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            slugs.add(slug)
    return slugs


@pytest.mark.parametrize("path", DOC_FILES, ids=[p.name for p in DOC_FILES])
def test_links_resolve(path):
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{path.name}: link to missing {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{path.name}: no heading #{anchor} in {dest.name}"


def _configs():
    """configs/base.yml, every data overlay merged over it, and every config that has a _base_: a
    documented key must exist in one of them."""
    from cellpipe.core.config import merge, read_yaml

    base = read_yaml(REPO / "configs" / "base.yml")
    out = [base]
    for path in sorted((REPO / "configs").rglob("*.yml")):
        data = read_yaml(path)
        if "_base_" in path.read_text():
            out.append(data)
        elif path.parent.name == "data":
            out.append(merge(base, data, strict=False))
    return out


def _source_param_exists(name):
    from cellpipe.sources import source_names

    return any(adapter_params(s) is None or name in adapter_params(s) for s in source_names())


def _key_exists(cfg, parts):
    node = cfg
    for part in parts:
        if not isinstance(node, dict):
            return False
        if part.startswith("<") and part.endswith(">"):  # stages/<stage>/...
            options = list(node.values())
            return any(_key_exists(o, parts[parts.index(part) + 1:]) for o in options)
        if not node and part:  # an empty mapping is free-form here (hierarchy, filter)
            return True
        if part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize("path", DOC_FILES, ids=[p.name for p in DOC_FILES])
def test_prose_names_exist(path):
    """Backticked repository paths and ``section/key`` config keys of the prose exist now."""
    configs = _configs()
    sections = "|".join(k for k, v in configs[0].items() if isinstance(v, dict))
    key_re = re.compile(rf"^(?:--)?((?:{sections}|source_params)(?:/[A-Za-z_<>][\w<>]*)+)(?:[=:].*)?$")
    problems = []
    text = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), path.read_text(), flags=re.S)
    for no, line in enumerate(text.splitlines(), 1):
        for span in re.findall(r"`([^`]+)`", line):
            m = key_re.match(span.strip())
            if m:
                parts = m.group(1).split("/")
                if parts[0] == "source_params":
                    parts = ["data_params", *parts]
                if parts[:2] == ["data_params", "source_params"] and len(parts) > 2:
                    if not _source_param_exists(parts[2]):
                        problems.append(f"{no}: no input adapter takes source_params/{parts[2]} ({span})")
                elif not any(_key_exists(cfg, parts) for cfg in configs):
                    problems.append(f"{no}: config key {m.group(1)} ({span}) is in no config of configs/")
            for word in re.findall(r"[\w./\-]+", span):
                if word.startswith(REPO_DIRS) and not re.search(r"[{*<]", span) and not (REPO / word).exists():
                    problems.append(f"{no}: path {word} ({span}) does not exist")
            for mod in re.findall(r"\bcellpipe(?:\.\w+)+", span):
                if not _module_name_exists(mod):
                    problems.append(f"{no}: {mod} does not exist")
            for script, name in re.findall(r"(?<![\w./])([a-z_]+)\.([A-Za-z_]\w*)\b(?![./])", span):
                if (REPO / "src" / f"{script}.py").is_file() and name not in FILE_SUFFIXES:
                    if not _module_name_exists(f"{script}.{name}", base=REPO / "src"):
                        problems.append(f"{no}: src/{script}.py has no {name} ({span})")
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


FILE_SUFFIXES = {"py", "log", "csv", "json", "jsonl", "yml", "npy", "pth", "png", "md", "txt", "parquet"}


def _module_name_exists(dotted, base=REPO / "src"):
    """cellpipe.a.b[.Name[.attr]] (or an entry script's script.name) resolves to a module file and a
    top-level name of it, without importing."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        mod = base.joinpath(*parts[:i])
        file = mod.with_suffix(".py") if mod.with_suffix(".py").is_file() else mod / "__init__.py"
        if file.is_file():
            rest = parts[i:]
            if not rest:
                return True
            tree = ast.parse(file.read_text())
            names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                      if isinstance(t, ast.Name)}
            names |= {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
            return rest[0] in names
    return False


def test_make_help_lists_documented_targets():
    """`make help` is data-free and quick: run it; every make target the docs show has a description."""
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    listed = set(out.stdout.split())
    shown = {w for c in ALL_COMMANDS for words in split_commands(c.text) if words[0] == "make"
             for w in words[1:] if not ENV_RE.match(w)}
    missing = sorted(shown - listed - KNOWN_UNLISTED)
    assert not missing, f"documented make targets that `make help` does not list: {missing}"
    fixed = sorted(KNOWN_UNLISTED & listed)
    assert not fixed, f"`make help` lists {fixed} now: remove them from KNOWN_UNLISTED and docs/development.md's note"
