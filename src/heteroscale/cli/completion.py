"""``heteroscale completion bash|zsh``: a shell completion script made from the argument parser itself,
so it never falls behind the commands and their options."""

from __future__ import annotations

import argparse


def _commands(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Each command's option strings (and the top level's under ``""``)."""
    out: dict[str, list[str]] = {"": [o for a in parser._actions for o in a.option_strings]}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[name] = sorted(o for a in sub._actions for o in a.option_strings)
    return out


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    commands = _commands(parser)
    names = " ".join(sorted(k for k in commands if k))
    top = " ".join(commands[""])
    cases = "\n".join(f'        {name}) opts="{" ".join(opts)}" ;;' for name, opts in sorted(commands.items()) if name)
    body = f"""_heteroscale() {{
    local cur cmd opts i
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    cmd=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in -*) ;; *) cmd="${{COMP_WORDS[i]}}"; break ;; esac
    done
    if [[ -z "$cmd" ]]; then
        COMPREPLY=($(compgen -W "{names} {top}" -- "$cur"))
        return
    fi
    case "$cmd" in
{cases}
        *) opts="" ;;
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -o filenames -F _heteroscale heteroscale"""
    if shell == "zsh":  # zsh runs bash completion functions through bashcompinit
        return "autoload -Uz bashcompinit && bashcompinit\n" + body
    return body
