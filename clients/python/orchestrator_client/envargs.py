"""Command-line options that also read ``ORCHESTRATOR_*`` variables and a TOML file.

Every entry point (scheduler, worker, ``taskctl``) builds its configuration with
:class:`EnvArgumentParser`, so the rule is the same everywhere: ``--database`` can be given
as ``ORCHESTRATOR_DATABASE``, ``--http-listen`` as ``ORCHESTRATOR_HTTP_LISTEN``. A parser
that calls :meth:`EnvArgumentParser.add_config_option` (the scheduler and the worker) also
reads ``--config FILE`` (or ``ORCHESTRATOR_CONFIG``): a TOML file whose keys are the long
option names, ``lease-ttl = 30`` or ``lease_ttl = 30``. The first source that sets an
option wins::

    command line  >  ORCHESTRATOR_* variable  >  --config file  >  built-in default

Each source goes through the option's own conversion (its ``type``, ``choices`` and
``action``), so a value is checked the same way wherever it comes from, and a bad one exits
with status 2 naming the flag, the variable, or the file and its key.

The environment is passed in (``environ=os.environ`` from ``__main__``) rather than read here,
so tests build configurations from plain dictionaries.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

ENV_PREFIX = "ORCHESTRATOR_"
CONFIG_VARIABLE = ENV_PREFIX + "CONFIG"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# Options that are commands to argparse rather than settings: no variable stands for them.
_NO_ENV_ACTIONS = ("help", "version")
_ENV_NOTE = re.compile(r"\s*\[env \w+\]$")

PRECEDENCE_EPILOG = (
    "Every option can also be set by its ORCHESTRATOR_* variable or as a key of the --config "
    "file (the option's name without dashes: log-level = 'debug' or log_level = 'debug'). "
    "The command line wins over the variable, the variable over the file, the file over the "
    "default."
)


def env_name(option: str) -> str:
    """``--http-listen`` -> ``ORCHESTRATOR_HTTP_LISTEN``."""
    return ENV_PREFIX + option.lstrip("-").replace("-", "_").upper()


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}, got {text!r}")


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` with a default shown only where it says something.

    argparse's ``ArgumentDefaultsHelpFormatter`` prints ``(default: None)``, ``(default: )``
    and ``(default: False)`` for options whose default is "not set"; this one leaves those
    out, and also those whose help already tells the default in words. Lists print as the
    comma-separated text one would type, and the default goes before the ``[env …]`` note.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default == "" or default == []
        if (
            not action.option_strings
            or action.nargs == 0  # a switch: its default is "off"
            or unset
            or default is argparse.SUPPRESS
            or "(default" in text
        ):
            return text
        shown = _shown(default).replace("%", "%%")  # the result is %-formatted by argparse
        note = _ENV_NOTE.search(text)
        if note is None:
            return f"{text} (default: {shown})"
        before, after = text[: note.start()], text[note.start() :].strip()
        return f"{before} (default: {shown}) {after}".strip()


def _shown(default: Any) -> str:
    if isinstance(default, (list, tuple)):
        return ",".join(map(_shown, default))
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


class EnvArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose long options fall back to ``ORCHESTRATOR_*`` variables.

    ``add_argument(..., env=False)`` opts an option out; argument groups made with
    :meth:`add_argument_group` follow the same rule. An option whose variable is read by the
    caller instead (it holds something else than the flag's value, like a secret's content
    rather than its path) says so with ``env_read_elsewhere=VARIABLE``: the variable then
    still wins over the config file. Repeatable options (``action="append"``/``"extend"``)
    given on the command line replace what a variable or the file gave, not add to it.
    """

    def __init__(self, *args: Any, environ: Mapping[str, str] | None = None, **kwargs: Any):
        # Set before ArgumentParser.__init__, which already adds --help through add_argument.
        self._environ: Mapping[str, str] = environ if environ is not None else {}
        #: Long names of the options whose variable is set: the config file yields to them.
        self._set_by_environment: set[str] = set()
        self._config_action: argparse.Action | None = None
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *name_or_flags: str, **kwargs: Any) -> argparse.Action:
        return super().add_argument(*name_or_flags, **self.with_env(name_or_flags, kwargs))

    def add_argument_group(self, *args: Any, **kwargs: Any) -> argparse._ArgumentGroup:
        group = _EnvArgumentGroup(self, *args, **kwargs)
        self._action_groups.append(group)
        return group

    def add_config_option(self) -> argparse.Action:
        """``--config FILE`` (``ORCHESTRATOR_CONFIG``): read option values from a TOML file.

        Keys are long option names without the dashes, dashes or underscores alike
        (``lease-ttl``/``lease_ttl``); values are TOML strings, numbers, booleans for
        switches, or arrays for repeatable options. The file is flat: one file per service.
        """
        self._config_action = self.add_argument(
            "--config",
            default="",
            metavar="FILE",
            help="a TOML file of option values, keys named like the options without their "
            "dashes (log-level = 'debug'); flags and variables win over it",
        )
        if self.epilog is None:
            self.epilog = PRECEDENCE_EPILOG
        return self._config_action

    def with_env(self, name_or_flags: Sequence[str], kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` with the environment variable as default and named in the help."""
        kwargs = dict(kwargs)
        use_env = kwargs.pop("env", True)
        read_elsewhere = kwargs.pop("env_read_elsewhere", None)
        long_names = [n for n in name_or_flags if n.startswith("--")]
        if kwargs.get("action") == "append":
            kwargs["action"] = _ReplacingAppend
        elif kwargs.get("action") == "extend":
            kwargs["action"] = _ReplacingExtend
        if read_elsewhere is not None and read_elsewhere in self._environ:
            self._set_by_environment.update(long_names)
        if not long_names or not use_env or kwargs.get("action") in _NO_ENV_ACTIONS:
            return kwargs
        variable = env_name(long_names[0])
        help_text = kwargs.get("help")
        if help_text is not argparse.SUPPRESS:
            kwargs["help"] = f"{help_text or ''} [env {variable}]".strip()
        raw = self._environ.get(variable)
        if raw is not None:
            kwargs["default"] = self._convert_env(variable, raw, kwargs)
            kwargs["required"] = False
            self._set_by_environment.update(long_names)
        return kwargs

    def _convert_env(self, variable: str, raw: str, kwargs: Mapping[str, Any]) -> Any:
        """Apply the option's own conversion to the variable, failing with its name."""
        action = kwargs.get("action")
        try:
            if action in ("store_true", "store_false", argparse.BooleanOptionalAction):
                return parse_bool(raw)
            if action in (_ReplacingAppend, _ReplacingExtend) or kwargs.get("nargs") in ("*", "+"):
                convert = kwargs.get("type", str)
                return [convert(part.strip()) for part in raw.split(",") if part.strip()]
            convert = kwargs.get("type")
            value = convert(raw) if convert is not None else raw
            choices = kwargs.get("choices")
            if choices is not None and value not in choices:
                raise ValueError(f"expected one of {list(choices)}")
            return value
        except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
            self.error(f"environment variable {variable}={raw!r}: {exc}")

    # -- the config file -------------------------------------------------------------------

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse as argparse does, over the defaults of the ``--config`` file if one is given.

        The file's values become the options' defaults for this one parse (and in
        ``--help``), so the command line still wins; options set by a variable keep it.
        """
        if self._config_action is None:
            return super().parse_known_args(args, namespace)
        argv = list(sys.argv[1:] if args is None else args)
        path = self._config_path(argv)
        if not path:
            return super().parse_known_args(argv, namespace)
        saved = [(action, action.default) for action in self._actions]
        try:
            self._apply_config_file(Path(path))
            return super().parse_known_args(argv, namespace)
        finally:
            for action, default in saved:
                action.default = default

    def _config_path(self, argv: list[str]) -> str:
        """``--config``'s value from the command line, else from ``ORCHESTRATOR_CONFIG``.

        A mistake on the command line (``--config`` without a value) is left to the full
        parse, which reports it with this parser's usage.
        """
        assert self._config_action is not None
        finder = _QuietParser(add_help=False, allow_abbrev=self.allow_abbrev)
        finder.add_argument(*self._config_action.option_strings, dest="config")
        try:
            found, _ = finder.parse_known_args(argv)
        except _NotFound:
            return ""
        given: str | None = found.config
        return given if given is not None else str(self._config_action.default or "")

    def _apply_config_file(self, path: Path) -> None:
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            self.error(f"--config {path}: {exc.strerror or exc}")
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            self.error(f"config file {path}: not valid TOML: {exc}")
        options = self._config_options()
        applied: dict[argparse.Action, str] = {}
        for key, value in document.items():
            spelled = key.replace("_", "-")
            if spelled not in options:
                self._unknown_key(path, key, value, list(options))
            action, option_string = options[spelled]
            if action in applied:
                self.error(f"config file {path}: {key!r} and {applied[action]!r} set one option")
            applied[action] = key
            if any(name in self._set_by_environment for name in action.option_strings):
                continue  # the variable wins
            try:
                action.default = self._config_value(action, option_string, value)
            except (argparse.ArgumentError, _ConfigTypeError) as exc:
                self.error(f"config file {path}: {key}: {exc.message}")
            action.required = False

    def _config_options(self) -> dict[str, tuple[argparse.Action, str]]:
        """Every key a config file may hold (``lease-ttl``) -> its option and flag."""
        options: dict[str, tuple[argparse.Action, str]] = {}
        for action in self._actions:
            if action is self._config_action or isinstance(
                action, (argparse._HelpAction, argparse._VersionAction)
            ):
                continue
            for option_string in action.option_strings:
                if option_string.startswith("--"):
                    options[option_string[2:]] = (action, option_string)
        return options

    def _unknown_key(self, path: Path, key: str, value: Any, known: list[str]) -> NoReturn:
        if isinstance(value, dict):
            self.error(
                f"config file {path}: [{key}]: tables are not read; write the options at the "
                "top level, one file per service"
            )
        if key.replace("_", "-") == "config":
            self.error(f"config file {path}: config: a config file cannot name another")
        close = difflib.get_close_matches(key.replace("_", "-"), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        self.error(f"config file {path}: unknown key {key!r}{hint}")

    def _config_value(self, action: argparse.Action, option_string: str, value: Any) -> Any:
        """What the option holds after ``value``, run through the option's own action.

        A switch takes ``true``/``false``; a repeatable option an array (each item as one
        flag) or a single value; anything else one string or number, converted by the
        option's ``type`` and checked against its ``choices`` as on the command line.
        """
        namespace = argparse.Namespace(**{action.dest: action.default})
        if action.nargs == 0:
            if not isinstance(value, bool):
                raise _ConfigTypeError(f"expected true or false, got {_toml(value)}")
            if isinstance(action, argparse.BooleanOptionalAction):
                return value != option_string.startswith("--no-")
            if value:
                action(self, namespace, None, option_string)
            return getattr(namespace, action.dest)
        takes_many = action.nargs in ("*", "+") or isinstance(action.nargs, int)
        if isinstance(value, list) and not takes_many and type(action) is argparse._StoreAction:
            raise _ConfigTypeError(f"expected one value, got an array {_toml(value)}")
        items = value if isinstance(value, list) else [value]
        texts = [_config_text(action, item) for item in items]
        for strings in [texts] if takes_many else [[text] for text in texts]:
            action(self, namespace, self._get_values(action, strings), option_string)
        return getattr(namespace, action.dest)


def _config_text(action: argparse.Action, item: Any) -> str:
    """A TOML scalar as the text the flag would have been given."""
    if isinstance(item, bool) or not isinstance(item, (str, int, float)):
        raise _ConfigTypeError(f"expected a string or a number, got {_toml(item)}")
    if not isinstance(item, str) and action.type in (None, str):
        raise _ConfigTypeError(f"expected a string, got {_toml(item)}")
    return item if isinstance(item, str) else str(item)


def _toml(value: Any) -> str:
    """A value as TOML spells it, for error messages (``true``, not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    return repr(value)


class _ConfigTypeError(Exception):
    """A config file value of a TOML type the option cannot take."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _NotFound(Exception):
    """The ``--config`` finder could not make sense of the command line."""


class _QuietParser(argparse.ArgumentParser):
    """Finds ``--config`` among the arguments; leaves every complaint to the real parser."""

    def error(self, message: str) -> NoReturn:
        raise _NotFound(message)


class _ReplacingAppend(argparse._AppendAction):
    """``append``, except that the first flag replaces a default from a variable or file."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if getattr(namespace, self.dest, None) is self.default:
            setattr(namespace, self.dest, None)
        super().__call__(parser, namespace, values, option_string)


class _ReplacingExtend(argparse._ExtendAction):
    """``extend``, except that the first flag replaces a default from a variable or file."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if getattr(namespace, self.dest, None) is self.default:
            setattr(namespace, self.dest, None)
        super().__call__(parser, namespace, values, option_string)


class _EnvArgumentGroup(argparse._ArgumentGroup):
    """An argument group whose options read the environment like the parser's own."""

    def __init__(self, parser: EnvArgumentParser, *args: Any, **kwargs: Any) -> None:
        super().__init__(parser, *args, **kwargs)
        self._env_parser = parser

    def add_argument(self, *name_or_flags: str, **kwargs: Any) -> argparse.Action:
        return super().add_argument(
            *name_or_flags, **self._env_parser.with_env(name_or_flags, kwargs)
        )
