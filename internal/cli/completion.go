package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newCompletionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Print a completion script for bash, zsh or fish.

  bash:  netops completion bash > /etc/bash_completion.d/netops
         (or: source <(netops completion bash) in ~/.bashrc)
  zsh:   netops completion zsh > "${fpath[1]}/_netops"
  fish:  netops completion fish > ~/.config/fish/completions/netops.fish`,
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args:      exactArgs(1, "one shell name (bash, zsh or fish)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			out := a.ios.Out
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			}
			return usageErrorf(fmt.Errorf("unsupported shell %q (choose bash, zsh or fish)", args[0]))
		},
	}
}
