package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// bashCompletion asks ringcap itself what may come next: urfave/cli
// answers --generate-bash-completion with the commands, or a command's
// flags after a dash. Written here because the library ships its shell
// scripts beside its code, not in it.
const bashCompletion = `# bash completion for ringcap: source it, or put it in
# /etc/bash_completion.d/ringcap (ringcap completion bash > ...).
_ringcap() {
	local cur=${COMP_WORDS[COMP_CWORD]} words
	if [[ $cur == -* ]]; then
		words=$("${COMP_WORDS[@]:0:COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
	else
		words=$("${COMP_WORDS[@]:0:COMP_CWORD}" --generate-bash-completion 2>/dev/null)
	fi
	COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o bashdefault -o default -F _ringcap ringcap
`

// zshCompletion is the bash completion through zsh's bashcompinit.
const zshCompletion = `#compdef ringcap
# zsh completion for ringcap: put it in a directory of $fpath as _ringcap.
autoload -U +X bashcompinit && bashcompinit
` + bashCompletion

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a completion script for bash, zsh or fish",
		UsageText: "ringcap completion bash|zsh|fish",
		Action: func(c *cli.Context) error {
			var script string
			switch shell := c.Args().First(); shell {
			case "bash":
				script = bashCompletion
			case "zsh":
				script = zshCompletion
			case "fish":
				var err error
				if script, err = c.App.ToFishCompletion(); err != nil {
					return fmt.Errorf("fish completion: %w", err)
				}
			default:
				return badUsage(c, "give the shell: bash, zsh or fish")
			}
			_, err := fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}

// manCommand prints the man page, made from the command definitions
// (`make man` writes docs/ringcap.1).
func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the man page",
		Hidden: true,
		Action: func(c *cli.Context) error {
			page, err := c.App.ToManWithSection(1)
			if err != nil {
				return fmt.Errorf("man page: %w", err)
			}
			_, err = fmt.Fprint(c.App.Writer, page)
			return err
		},
	}
}
