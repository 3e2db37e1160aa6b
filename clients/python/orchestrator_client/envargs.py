"""Command-line options that also read ``ORCHESTRATOR_*`` environment variables.

Every entry point (scheduler, worker, ``taskctl``) builds its configuration with
:class:`EnvArgumentParser`, so the rule is the same everywhere: ``--database`` can be given
as ``ORCHESTRATOR_DATABASE``, ``--http-listen`` as ``ORCHESTRATOR_HTTP_LISTEN``; a flag on the
command line wins over the variable, the variable over the built-in default.

The environment is passed in (``environ=os.environ`` from ``__main__``) rather than read here,
so tests build configurations from plain dictionaries.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

ENV_PREFIX = "ORCHESTRATOR_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# Options that are commands to argparse rather than settings: no variable stands for them.
_NO_ENV_ACTIONS = ("help", "version")


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


class EnvArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose long options fall back to ``ORCHESTRATOR_*`` variables.

    ``add_argument(..., env=False)`` opts an option out; argument groups made with
    :meth:`add_argument_group` follow the same rule.
    """

    def __init__(self, *args: Any, environ: Mapping[str, str] | None = None, **kwargs: Any):
        # Set before ArgumentParser.__init__, which already adds --help through add_argument.
        self._environ: Mapping[str, str] = environ if environ is not None else {}
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *name_or_flags: str, **kwargs: Any) -> argparse.Action:
        return super().add_argument(*name_or_flags, **self.with_env(name_or_flags, kwargs))

    def add_argument_group(self, *args: Any, **kwargs: Any) -> argparse._ArgumentGroup:
        group = _EnvArgumentGroup(self, *args, **kwargs)
        self._action_groups.append(group)
        return group

    def with_env(self, name_or_flags: Sequence[str], kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` with the environment variable as default and named in the help."""
        kwargs = dict(kwargs)
        use_env = kwargs.pop("env", True)
        long_names = [n for n in name_or_flags if n.startswith("--")]
        if not long_names or not use_env or kwargs.get("action") in ("help", "version"):
            return kwargs
        variable = env_name(long_names[0])
        help_text = kwargs.get("help")
        if help_text is not argparse.SUPPRESS:
            kwargs["help"] = f"{help_text or ''} [env {variable}]".strip()
        raw = self._environ.get(variable)
        if raw is not None:
            kwargs["default"] = self._convert_env(variable, raw, kwargs)
            kwargs["required"] = False
        return kwargs

    def _convert_env(self, variable: str, raw: str, kwargs: Mapping[str, Any]) -> Any:
        """Apply the option's own conversion to the variable, failing with its name."""
        action = kwargs.get("action")
        try:
            if action in ("store_true", "store_false", argparse.BooleanOptionalAction):
                return parse_bool(raw)
            if action == "append" or kwargs.get("nargs") in ("*", "+"):
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


class _EnvArgumentGroup(argparse._ArgumentGroup):
    """An argument group whose options read the environment like the parser's own."""

    def __init__(self, parser: EnvArgumentParser, *args: Any, **kwargs: Any) -> None:
        super().__init__(parser, *args, **kwargs)
        self._env_parser = parser

    def add_argument(self, *name_or_flags: str, **kwargs: Any) -> argparse.Action:
        return super().add_argument(
            *name_or_flags, **self._env_parser.with_env(name_or_flags, kwargs)
        )
