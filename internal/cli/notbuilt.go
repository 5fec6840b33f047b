package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// notBuiltError is returned by commands whose capability is not implemented yet.
// They say so plainly and exit 64; they never print made-up results.
type notBuiltError struct {
	name  string
	issue int
}

func (e *notBuiltError) Error() string {
	return fmt.Sprintf("'netops %s' is not built yet (planned in issue #%d); nothing was done", e.name, e.issue)
}

func newNotBuiltCmd(name, short string, issue int) *cobra.Command {
	return &cobra.Command{
		Use:   name,
		Short: short + " (not built yet)",
		Long: short + ".\n\nThis command is not built yet (planned in issue #" + fmt.Sprint(issue) +
			"). Running it does nothing and exits 64.",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, arg := range args {
				if arg == "-h" || arg == "--help" {
					return cmd.Help()
				}
			}
			return &usageError{err: &notBuiltError{name: name, issue: issue}}
		},
	}
}
