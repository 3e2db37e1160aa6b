"""``taskctl completion bash|zsh|fish``: a shell completion script made from the real parser.

The parser is the one truth about commands and flags, so the scripts are generated from it
at run time rather than written by hand beside it: a new command or flag completes as soon
as it exists. :func:`command_tree` reads the parser into a small shell-neutral model; one
renderer per shell writes it out. The three scripts work the same way: walk the words
before the cursor (skipping each option's value) to find the command and, for
``schedule``, its action; then offer that context's options, subcommands, an option's
choices, or file names where an option or argument is a path. Task ids are not completed
(that would call the scheduler on every Tab).
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

SHELLS = ("bash", "zsh", "fish")
PROG = "taskctl"


@dataclass(frozen=True)
class Option:
    """One flag of one command, as a completer needs it."""

    flags: tuple[str, ...]
    help: str
    takes_value: bool
    choices: tuple[str, ...]
    is_path: bool


@dataclass(frozen=True)
class Context:
    """A command (``create``), an action (``schedule create``) or the top level (``""``)."""

    name: str
    help: str
    options: tuple[Option, ...]
    subcommands: tuple[Context, ...]
    #: What the first positional argument completes to: choices, or file names.
    positional_choices: tuple[str, ...]
    positional_is_path: bool

    def walk(self) -> Iterator[Context]:
        """This context and every one below it, parents first."""
        yield self
        for sub in self.subcommands:
            yield from sub.walk()

    @property
    def value_flags(self) -> list[str]:
        return [flag for option in self.options if option.takes_value for flag in option.flags]

    @property
    def all_flags(self) -> list[str]:
        return [flag for option in self.options for flag in option.flags]


@dataclass(frozen=True)
class Hints:
    """What the parser cannot say itself: which arguments are paths, and the words of
    options whose ``type`` checks a value rather than offering ``choices`` (``--state``)."""

    path_dests: frozenset[str] = frozenset()
    words: Mapping[str, Sequence[str]] = field(default_factory=dict)


def command_tree(parser: argparse.ArgumentParser, hints: Hints) -> Context:
    """The parser as a tree of contexts."""
    return _context(parser, "", parser.description or "", hints)


def _context(parser: argparse.ArgumentParser, name: str, help_text: str, hints: Hints) -> Context:
    options: list[Option] = []
    subcommands: list[Context] = []
    positional_choices: tuple[str, ...] = ()
    positional_is_path = False
    first_positional = True
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for sub_name, sub_parser in action.choices.items():
                full = f"{name} {sub_name}".strip()
                subcommands.append(_context(sub_parser, full, helps.get(sub_name, ""), hints))
        elif action.option_strings:
            if action.help == argparse.SUPPRESS:
                continue
            options.append(
                Option(
                    flags=tuple(action.option_strings),
                    help=_first_sentence(action.help or ""),
                    takes_value=action.nargs != 0,
                    choices=tuple(map(str, action.choices or hints.words.get(action.dest, ()))),
                    is_path=action.dest in hints.path_dests,
                )
            )
        elif first_positional:
            first_positional = False
            positional_choices = tuple(map(str, action.choices or ()))
            positional_is_path = action.dest in hints.path_dests
    return Context(
        name=name,
        help=_first_sentence(help_text),
        options=tuple(options),
        subcommands=tuple(subcommands),
        positional_choices=positional_choices,
        positional_is_path=positional_is_path,
    )


def _first_sentence(text: str) -> str:
    """A help text short enough for a completion menu, without the ``[env …]`` note."""
    text = text.split(" [env ")[0]
    for stop in ("; ", ". ", " (", ": "):
        text = text.split(stop)[0]
    return " ".join(text.split())


def script(shell: str, tree: Context) -> str:
    """The completion script of ``shell`` for ``tree``."""
    renderers: dict[str, Callable[[Context], str]] = {
        "bash": _bash,
        "zsh": _zsh,
        "fish": _fish,
    }
    return renderers[shell](tree)


# -- bash and zsh share the helper functions (case statements over the context) -----------


def _case_function(name: str, rows: list[tuple[str, str]]) -> str:
    """``name CONTEXT [FLAG]`` prints the words of the first row whose key matches."""
    lines = [f"__{PROG}_{name}() {{", '    case "$1${2:+|$2}" in']
    for key, words in rows:
        if words:
            lines.append(f"        {shlex.quote(key)}) printf '%s\\n' {shlex.quote(words)} ;;")
    lines += ["    esac", "}"]
    return "\n".join(lines)


def _posix_helpers(tree: Context) -> str:
    contexts = list(tree.walk())
    choices = [
        (f"{c.name}|{flag}", " ".join(o.choices))
        for c in contexts
        for o in c.options
        if o.choices
        for flag in o.flags
    ]
    paths = [
        (f"{c.name}|{flag}", "path")
        for c in contexts
        for o in c.options
        if o.is_path
        for flag in o.flags
    ]
    positionals = [
        (c.name, " ".join(c.positional_choices) or ("path" if c.positional_is_path else ""))
        for c in contexts
    ]
    return "\n\n".join(
        [
            _case_function("options", [(c.name, " ".join(c.all_flags)) for c in contexts]),
            _case_function("value_options", [(c.name, " ".join(c.value_flags)) for c in contexts]),
            _case_function(
                "subcommands",
                [(c.name, " ".join(s.name.split()[-1] for s in c.subcommands)) for c in contexts],
            ),
            _case_function("choices", choices),
            _case_function("paths", paths),
            _case_function("positional", positionals),
        ]
    )


def _walk(first: int, cursor: str, word: str) -> str:
    """The walk over the words before the cursor, the same in bash and zsh but for where
    the words are: bash's ``COMP_WORDS`` starts with the command at 0, zsh's ``words`` at 1.
    It leaves the command (and action) in ``context``, and ``skip`` set when the word before
    the cursor is an option waiting for its value."""
    return _WALK.replace("FIRST", str(first)).replace("CURSOR", cursor).replace("WORD_I", word)


_WALK = """\
    local context="" skip="" word subs i
    for (( i = FIRST; i < CURSOR; i++ )); do
        word=WORD_I
        if [[ -n $skip ]]; then skip=""; continue; fi
        case "$word" in
            --*=*) ;;
            -*) [[ " $(__taskctl_value_options "$context") " == *" $word "* ]] && skip=1 ;;
            *)
                subs=" $(__taskctl_subcommands "$context") "
                [[ $subs == *" $word "* ]] && context="${context:+$context }$word"
                ;;
        esac
    done"""


def _bash(tree: Context) -> str:
    walk = _walk(1, "COMP_CWORD", '"${COMP_WORDS[i]}"')
    return f"""\
# bash completion for taskctl, generated by `taskctl completion bash` from its own parser.
# Load it now:      source <(taskctl completion bash)
# Or for good:      taskctl completion bash > ~/.local/share/bash-completion/completions/taskctl

{_posix_helpers(tree)}

_taskctl() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" words
    COMPREPLY=()
{walk}
    if [[ -n $skip ]]; then  # the word before the cursor is an option that takes a value
        words="$(__taskctl_choices "$context" "$prev")"
        if [[ -n $words ]]; then
            mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
        elif [[ -n "$(__taskctl_paths "$context" "$prev")" ]]; then
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        fi
        return 0
    fi
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$(__taskctl_options "$context")" -- "$cur")
        return 0
    fi
    words="$(__taskctl_subcommands "$context")"
    [[ -z $words ]] && words="$(__taskctl_positional "$context")"
    if [[ $words == path ]]; then
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    else
        mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
    fi
    return 0
}}

complete -F _taskctl taskctl
"""


def _zsh(tree: Context) -> str:
    walk = _walk(2, "CURRENT", '"${words[i]}"')
    described = [
        (c.name, "\n".join(f"{s.name.split()[-1]}:{s.help}" for s in c.subcommands))
        for c in tree.walk()
    ]
    return f"""\
#compdef taskctl
# zsh completion for taskctl, generated by `taskctl completion zsh` from its own parser.
# Load it now:      source <(taskctl completion zsh)
# Or for good:      taskctl completion zsh > "${{fpath[1]}}/_taskctl"   (then restart zsh)

{_posix_helpers(tree)}

{_case_function("described", described)}

_taskctl() {{
    local cur="${{words[CURRENT]}}" prev="${{words[CURRENT-1]}}" found
    local -a described
{walk}
    if [[ -n $skip ]]; then  # the word before the cursor is an option that takes a value
        found="$(__taskctl_choices "$context" "$prev")"
        if [[ -n $found ]]; then
            compadd -- ${{=found}}
        elif [[ -n "$(__taskctl_paths "$context" "$prev")" ]]; then
            _files
        fi
        return
    fi
    if [[ $cur == -* ]]; then
        compadd -- ${{=$(__taskctl_options "$context")}}
        return
    fi
    found="$(__taskctl_described "$context")"
    if [[ -n $found ]]; then
        described=("${{(@f)found}}")
        _describe -t commands 'taskctl command' described
        return
    fi
    found="$(__taskctl_positional "$context")"
    if [[ $found == path ]]; then
        _files
    elif [[ -n $found ]]; then
        compadd -- ${{=found}}
    fi
}}

if [[ ${{zsh_eval_context[-1]}} == loadautofunc ]]; then
    _taskctl "$@"
else
    compdef _taskctl taskctl
fi
"""


# -- fish: declarative, one `complete` line per flag and subcommand ------------------------


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_switch(name: str, rows: list[tuple[str, list[str]]]) -> str:
    lines = [f"function __{PROG}_{name}", "    switch $argv[1]"]
    for key, words in rows:
        if words:
            lines.append(f"        case {_fish_quote(key)}")
            lines.append("            printf '%s\\n' " + " ".join(map(_fish_quote, words)))
    lines += ["    end", "end"]
    return "\n".join(lines)


def _fish(tree: Context) -> str:
    contexts = list(tree.walk())
    lines = [
        "# fish completion for taskctl, generated by `taskctl completion fish` from its parser.",
        "# Load it now:      taskctl completion fish | source",
        "# Or for good:      taskctl completion fish > ~/.config/fish/completions/taskctl.fish",
        "",
        _fish_switch("value_options", [(c.name, c.value_flags) for c in contexts]),
        "",
        _fish_switch(
            "subcommands",
            [(c.name, [s.name.split()[-1] for s in c.subcommands]) for c in contexts],
        ),
        "",
        "# The command (and action) before the cursor: words that name a subcommand, skipping",
        "# options and the values of those that take one.",
        "function __taskctl_context",
        "    set -l context ''",
        "    set -l skip 0",
        "    set -l words (commandline -opc)",
        "    set -e words[1]",
        "    for word in $words",
        "        if test $skip = 1",
        "            set skip 0",
        "            continue",
        "        end",
        "        switch $word",
        "            case '--*=*'",
        "            case '-*'",
        "                contains -- $word (__taskctl_value_options $context); and set skip 1",
        "            case '*'",
        "                if contains -- $word (__taskctl_subcommands $context)",
        '                    set context (string trim -- "$context $word")',
        "                end",
        "        end",
        "    end",
        "    echo $context",
        "end",
        "",
        "function __taskctl_in",
        '    test (__taskctl_context) = "$argv[1]"',
        "end",
        "",
        "complete -c taskctl -f",
    ]
    for context in contexts:
        condition = f"-n {_fish_quote('__taskctl_in ' + _fish_quote(context.name))}"
        for sub in context.subcommands:
            word = sub.name.split()[-1]
            lines.append(
                f"complete -c taskctl {condition} -a {_fish_quote(word)} -d {_fish_quote(sub.help)}"
            )
        if context.positional_choices:
            words = " ".join(context.positional_choices)
            lines.append(f"complete -c taskctl {condition} -a {_fish_quote(words)}")
        elif context.positional_is_path:
            lines.append(f"complete -c taskctl {condition} -F")
        for option in context.options:
            parts = [f"complete -c taskctl {condition}"]
            for flag in option.flags:
                if flag.startswith("--"):
                    parts.append(f"-l {_fish_quote(flag[2:])}")
                else:
                    parts.append(f"-s {_fish_quote(flag[1:])}")
            if option.is_path:
                parts.append("-r -F")  # a value, from the file names
            elif option.takes_value:
                parts.append("-x")  # a value, never a file name
                if option.choices:
                    parts.append(f"-a {_fish_quote(' '.join(option.choices))}")
            if option.help:
                parts.append(f"-d {_fish_quote(option.help)}")
            lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"
